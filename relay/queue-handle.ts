/**
 * How the process talks to its queue. The queue (scheduling, delivery, bounces) runs either
 * in this thread (`inline`: tests, libraries) or in a worker thread (`worker`: the
 * `mailfleet relay` command), so delivery work never delays an SMTP reply and the relay uses
 * a second core. Both speak the same small interface; the queue code is the same.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { RelayConfig } from './config.js';
import { createRoute } from './delivery/routes.js';
import { QueueMetrics } from './metrics.js';
import { QueueManager, type QueueSettings } from './queue.js';
import type { QueueStats } from './scheduler.js';
import { Spool, type SpoolEntry } from './spool.js';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export interface RecoverySummary {
  messages: number;
  discardedPartial: number;
  corrupt: string[];
}

export interface QueueHandle {
  /** Recovers the spool and starts delivering. */
  start(): Promise<RecoverySummary>;
  enqueue(entry: SpoolEntry): void;
  reconfigure(config: RelayConfig): void;
  /** Stops delivery by the deadline; resolves with the number of messages left in the spool. */
  stop(deadlineMs: number): Promise<number>;
  stats(): Promise<QueueStats>;
  metrics(): Promise<MetricsJson>;
}

export function queueSettings(c: RelayConfig): QueueSettings {
  return {
    hostname: c.hostname,
    messagesPerConnection: c.delivery.messagesPerConnection,
    maxConnections: c.delivery.maxConnections,
    maxConnectionsPerDestination: c.delivery.maxConnectionsPerDestination,
    minBackoff: c.retry.minBackoff,
    maxBackoff: c.retry.maxBackoff,
    lifetime: c.retry.lifetime,
    delayNoticeAfter: c.retry.delayNoticeAfter,
  };
}

function routeFor(c: RelayConfig) {
  return createRoute(c.delivery.route, { heloName: c.hostname, connectTimeoutMs: c.delivery.connectTimeout * 1000, responseTimeoutMs: c.delivery.responseTimeout * 1000 });
}

/** The queue in this thread. */
export class InlineQueue implements QueueHandle {
  readonly manager: QueueManager;
  private readonly spool: Spool;
  private readonly queueMetrics: QueueMetrics;
  private config: RelayConfig;

  constructor(config: RelayConfig, log: Logger) {
    this.config = config;
    this.spool = new Spool(config.spool.dir);
    const ref: { manager?: QueueManager } = {};
    this.queueMetrics = new QueueMetrics(() => ref.manager!.scheduler.stats(Date.now()));
    this.manager = ref.manager = new QueueManager(queueSettings(config), { spool: this.spool, route: routeFor(config), log, metrics: this.queueMetrics });
  }

  async start(): Promise<RecoverySummary> {
    await this.spool.open();
    const report = await this.spool.recover();
    for (const entry of report.entries) this.manager.enqueue(entry);
    this.manager.start();
    return { messages: report.entries.length, discardedPartial: report.discardedPartial, corrupt: report.corrupt };
  }

  enqueue(entry: SpoolEntry): void {
    this.manager.enqueue(entry);
  }

  reconfigure(config: RelayConfig): void {
    const routeChanged = JSON.stringify(config.delivery) !== JSON.stringify(this.config.delivery);
    this.config = config;
    this.manager.reconfigure(queueSettings(config), routeChanged ? routeFor(config) : undefined);
  }

  async stop(deadlineMs: number): Promise<number> {
    await this.manager.stop(deadlineMs);
    return this.manager.size;
  }

  async stats(): Promise<QueueStats> {
    return this.manager.scheduler.stats(Date.now());
  }

  metrics(): Promise<MetricsJson> {
    return this.queueMetrics.registry.getMetricsAsJSON() as Promise<MetricsJson>;
  }
}

/** Messages between the process and the queue worker (relay/queue-worker.ts). */
export type ToWorker =
  | { type: 'start' }
  | { type: 'enqueue'; entry: SpoolEntry }
  | { type: 'reconfigure'; config: RelayConfig }
  | { type: 'stop'; deadlineMs: number; id: number }
  | { type: 'stats'; id: number }
  | { type: 'metrics'; id: number };

export type FromWorker = { type: 'reply'; id: number; value: unknown } | { type: 'started'; summary: RecoverySummary } | { type: 'failed'; message: string };

/** The queue in a worker thread. */
export class WorkerQueue implements QueueHandle {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, (value: unknown) => void>();
  private started?: { resolve: (s: RecoverySummary) => void; reject: (e: Error) => void };

  constructor(config: RelayConfig, logLevel: string) {
    this.worker = new Worker(new URL('./queue-worker.js', import.meta.url), { workerData: { config, logLevel } });
    this.worker.on('message', (m: FromWorker) => {
      if (m.type === 'reply') {
        this.pending.get(m.id)?.(m.value);
        this.pending.delete(m.id);
      } else if (m.type === 'started') this.started?.resolve(m.summary);
      else this.started?.reject(new Error(m.message));
    });
    this.worker.on('error', (err) => {
      this.started?.reject(err);
      // A queue that died cannot deliver: let the process fail loudly and restart (the spool keeps everything).
      process.emitWarning(`queue worker failed: ${err.stack ?? err.message}`);
      process.exitCode = 1;
      process.kill(process.pid, 'SIGTERM');
    });
  }

  start(): Promise<RecoverySummary> {
    return new Promise((resolve, reject) => {
      this.started = { resolve, reject };
      this.post({ type: 'start' });
    });
  }

  enqueue(entry: SpoolEntry): void {
    this.post({ type: 'enqueue', entry });
  }

  reconfigure(config: RelayConfig): void {
    this.post({ type: 'reconfigure', config });
  }

  async stop(deadlineMs: number): Promise<number> {
    const left = (await this.ask({ type: 'stop', deadlineMs, id: 0 })) as number;
    await this.worker.terminate();
    return left;
  }

  stats(): Promise<QueueStats> {
    return this.ask({ type: 'stats', id: 0 }) as Promise<QueueStats>;
  }

  metrics(): Promise<MetricsJson> {
    return this.ask({ type: 'metrics', id: 0 }) as Promise<MetricsJson>;
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private ask(m: Extract<ToWorker, { id: number }>): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.post({ ...m, id });
    });
  }
}
