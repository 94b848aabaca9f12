/**
 * How the process talks to its queue. The queue (scheduling, delivery, bounces) runs either
 * in this thread (`inline`: tests, libraries) or in a worker thread (`worker`: the
 * `mailfleet relay` command), so delivery work never delays an SMTP reply and the relay uses
 * a second core. Both speak the same small interface; the queue code is the same.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { RelayConfig } from './config.js';
import { providerTable } from './delivery/providers.js';
import { createRoute, type Route } from './delivery/routes.js';
import { DkimSigner } from './dkim.js';
import { QueueMetrics } from './metrics.js';
import { QueueManager, type PermanentFailure, type QueueSettings } from './queue/manager.js';
import type { QueueStats } from './queue/scheduler.js';
import type { JournalLocation } from './journal.js';
import { Spool, type SpoolEntry } from './spool.js';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export interface RecoverySummary {
  messages: number;
  discardedPartial: number;
  corrupt: string[];
  /** Live records per journal segment: the main thread's spool, which writes the journal, takes these over. */
  journalLive: [string, number][];
}

/** Hears of every recipient that failed for good at the destination (the suppression list, in the main thread). */
export type PermanentFailureListener = (failure: PermanentFailure) => void;

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
    idleConnectionTime: c.delivery.idleConnectionTime,
    // Only the mx route reaches providers directly; a smarthost or the outbox is one destination.
    providers: c.delivery.route.type === 'mx' ? providerTable(c.delivery.providers) : [],
  };
}

function routeFor(c: RelayConfig, log: Logger) {
  return createRoute(c.delivery.route, {
    heloName: c.hostname,
    connectTimeoutMs: c.delivery.connectTimeout * 1000,
    responseTimeoutMs: c.delivery.responseTimeout * 1000,
    providers: providerTable(c.delivery.providers),
    tlsPolicy: c.delivery.tlsPolicy,
    log,
  });
}

/** The queue in this thread. */
export class InlineQueue implements QueueHandle {
  readonly manager: QueueManager;
  private readonly spool: Spool;
  private readonly queueMetrics: QueueMetrics;
  private config: RelayConfig;

  /**
   * `spool`: the process's own in this thread (the process closes it); in the worker, one that
   * tells the main thread about finished journal messages (`ownsSpool`: closed at stop).
   */
  constructor(
    config: RelayConfig,
    private readonly log: Logger,
    spool: Spool,
    onPermanentFailure?: PermanentFailureListener,
    private readonly ownsSpool = false,
  ) {
    this.config = config;
    this.spool = spool;
    const ref: { manager?: QueueManager } = {};
    this.queueMetrics = new QueueMetrics(() => ref.manager!.scheduler.stats(Date.now()));
    this.manager = ref.manager = new QueueManager(queueSettings(config), { spool: this.spool, route: routeFor(config, log), log, metrics: this.queueMetrics, now: Date.now, onPermanentFailure, signer: DkimSigner.fromConfig(config.senderDomains) });
  }

  async start(): Promise<RecoverySummary> {
    await this.spool.open();
    const report = await this.spool.recover();
    for (const entry of report.entries) this.manager.enqueue(entry);
    this.manager.start();
    return { messages: report.entries.length, discardedPartial: report.discardedPartial, corrupt: report.corrupt, journalLive: report.journalLive };
  }

  enqueue(entry: SpoolEntry): void {
    this.manager.enqueue(entry);
  }


  reconfigure(config: RelayConfig): void {
    const routeChanged = JSON.stringify(config.delivery) !== JSON.stringify(this.config.delivery);
    this.config = config;
    this.manager.reconfigure(queueSettings(config), routeChanged ? this.routeFor(config) : undefined, this.signerFor(config));
  }

  /** The new route; one that cannot be made (a CA file gone since the main thread checked) keeps the old. */
  private routeFor(config: RelayConfig): Route | undefined {
    try {
      return routeFor(config, this.log);
    } catch (err) {
      this.log.error({ err }, 'the new delivery route could not be set up; delivery goes on with the previous one');
      return undefined;
    }
  }

  /** New keys on reload; keys that vanished since the main thread checked them keep the old signer. */
  private signerFor(config: RelayConfig): DkimSigner | undefined {
    try {
      return DkimSigner.fromConfig(config.senderDomains);
    } catch (err) {
      this.log.error({ err }, 'DKIM keys could not be loaded; signing goes on with the previous keys');
      return undefined;
    }
  }

  async stop(deadlineMs: number): Promise<number> {
    await this.manager.stop(deadlineMs);
    if (this.ownsSpool) await this.spool.close();
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
  | { type: 'enqueue'; entries: SpoolEntry[] }
  | { type: 'reconfigure'; config: RelayConfig }
  | { type: 'stop'; deadlineMs: number; id: number }
  | { type: 'stats'; id: number }
  | { type: 'metrics'; id: number };

export type FromWorker =
  | { type: 'reply'; id: number; value: unknown }
  | { type: 'started'; summary: RecoverySummary }
  | { type: 'failed'; message: string }
  | { type: 'permanentFailure'; failure: PermanentFailure }
  | { type: 'journalDone'; marks: [JournalLocation, string][] };

/** The queue in a worker thread. */
export class WorkerQueue implements QueueHandle {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, (value: unknown) => void>();
  private started?: { resolve: (s: RecoverySummary) => void; reject: (e: Error) => void };

  /** `onJournalDone`: the worker finished a journal message; the main thread's spool, which writes the journal, marks it. */
  constructor(config: RelayConfig, logLevel: string, onJournalDone: (location: JournalLocation, id: string) => void, onPermanentFailure?: PermanentFailureListener) {
    this.worker = new Worker(new URL('./queue-worker.js', import.meta.url), { workerData: { config, logLevel } });
    this.worker.on('message', (m: FromWorker) => {
      if (m.type === 'reply') {
        this.pending.get(m.id)?.(m.value);
        this.pending.delete(m.id);
      } else if (m.type === 'started') {
        this.running = true;
        this.started?.resolve(m.summary);
      } else if (m.type === 'permanentFailure') onPermanentFailure?.(m.failure);
      else if (m.type === 'journalDone') for (const [location, id] of m.marks) onJournalDone(location, id);
      else this.started?.reject(new Error(m.message));
    });
    const died = (this.died = (reason: string) => {
      if (this.dead) return;
      this.dead = reason;
      this.started?.reject(new Error(reason));
      // Nobody will answer now: settle every question so shutdown and /metrics do not hang.
      for (const resolve of this.pending.values()) resolve(undefined);
      this.pending.clear();
      // A relay that cannot deliver must not look healthy: exit non-zero through the normal
      // drain, and let the restart recover the spool (nothing accepted is lost).
      // (Before start finished, the rejected start reports it instead.)
      if (!this.running) return;
      process.exitCode = 1;
      process.emitWarning(`queue worker stopped: ${reason}`);
      process.kill(process.pid, 'SIGTERM');
    });
    this.worker.on('error', (err) => died(err.stack ?? err.message));
    this.worker.on('exit', (code) => {
      if (!this.stopping) died(`exited with code ${code}`);
    });
  }

  /** Why the worker is gone, if it is. */
  dead: string | undefined;
  /** Gives the worker up: not ready, drain, exit non-zero (the restart recovers the spool). */
  private readonly died: (reason: string) => void;
  private stopping = false;
  private running = false;

  start(): Promise<RecoverySummary> {
    return new Promise((resolve, reject) => {
      this.started = { resolve, reject };
      this.post({ type: 'start' });
    });
  }

  /** Messages for the worker, sent together once per turn of the event loop (one group commit acknowledges several). */
  private outbox: SpoolEntry[] = [];
  private bodies: ArrayBuffer[] = [];

  enqueue(entry: SpoolEntry): void {
    if (!this.outbox.length) setImmediate(() => this.flushOutbox());
    if (entry.body) {
      // A small Buffer is a view into an 8 KiB shared pool: copy just its bytes and move them,
      // so the worker holds what the body cache counts, and nothing of other messages.
      const body = new Uint8Array(entry.body);
      this.bodies.push(body.buffer);
      entry = { ...entry, body: body as Buffer };
    }
    this.outbox.push(entry);
  }

  private flushOutbox(): void {
    const entries = this.outbox;
    const bodies = this.bodies;
    this.outbox = [];
    this.bodies = [];
    if (!entries.length) return;
    try {
      this.worker.postMessage({ type: 'enqueue', entries } satisfies ToWorker, bodies);
    } catch (err) {
      // Runs from setImmediate: a throw here would end the process without a drain. The mail
      // is on disk either way; the restart delivers it.
      this.died(`could not hand accepted mail to the queue worker: ${(err as Error).message}`);
    }
  }

  reconfigure(config: RelayConfig): void {
    this.post({ type: 'reconfigure', config });
  }

  async stop(deadlineMs: number): Promise<number> {
    this.stopping = true;
    const left = this.dead ? undefined : ((await this.ask({ type: 'stop', deadlineMs, id: 0 })) as number | undefined);
    await this.worker.terminate();
    return left ?? NaN;
  }

  async stats(): Promise<QueueStats> {
    return ((await this.ask({ type: 'stats', id: 0 })) as QueueStats | undefined) ?? { ready: 0, deferred: 0, inflight: 0, oldestReadySeconds: 0, overdueSeconds: 0 };
  }

  async metrics(): Promise<MetricsJson> {
    return ((await this.ask({ type: 'metrics', id: 0 })) as MetricsJson | undefined) ?? [];
  }

  private post(m: ToWorker): void {
    // Mail accepted before this message (a stop, say) must reach the worker before it.
    this.flushOutbox();
    this.worker.postMessage(m);
  }

  private ask(m: Extract<ToWorker, { id: number }>): Promise<unknown> {
    if (this.dead) return Promise.resolve(undefined);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.post({ ...m, id });
    });
  }
}
