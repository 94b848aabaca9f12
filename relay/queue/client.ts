/**
 * How the main thread talks to its queue: by messages only (relay/queue/runtime.ts ToQueue and
 * FromQueue), whether the queue runs in a worker thread (`WorkerQueue`: the `mailfleet relay`
 * command, so delivery work never delays an SMTP reply and the relay uses a second core) or in
 * this thread (`InlineQueue`, relay/queue/inline.ts: tests, libraries), where the messages are
 * delivered by function call. Both are one QueueClient with another transport, so tests run
 * the code the command runs. This module does not load the delivery code: with the worker, the
 * main thread never holds it.
 */
import { Worker } from 'node:worker_threads';
import type { RelayConfig } from '../config.js';
import type { SegmentCount } from '../spool/journal-format.js';
import type { SegmentSealed } from '../spool/journal-writer.js';
import type { RelayEvent } from '../events/event.js';
import type { PermanentFailure } from './manager.js';
import type { FromQueue, MetricsJson, ToQueue } from './runtime.js';
import type { QueueStats } from './scheduler.js';
import type { SpoolEntry } from '../spool/spool.js';

/** Hears of every recipient that failed for good at the destination (the suppression list, in the main thread). */
export type PermanentFailureListener = (failure: PermanentFailure) => void;

export interface QueueHandle {
  /** Hands over what the main thread's recovery found (its mail, and its journal segments with their counts) and starts delivering. */
  start(recovered: { entries: SpoolEntry[]; segments: SegmentCount[] }): Promise<void>;
  /** Hands over a message the spool holds (accepted by intake, or taken from a peer). */
  enqueue(entry: SpoolEntry): void;
  /** The journal writer let go of a segment. */
  sealed(seal: SegmentSealed): void;
  reconfigure(config: RelayConfig): void;
  /** Stops delivery by the deadline; resolves with the number of messages left in the spool (NaN when the queue had died). */
  stop(deadlineMs: number): Promise<number>;
  stats(): Promise<QueueStats>;
  metrics(): Promise<MetricsJson>;
  /** Puts a stopping peer's events in this relay's outbox; resolves with how many were taken (0: no webhook here). */
  publish(events: RelayEvent[]): Promise<number>;
}

const NO_STATS: QueueStats = { ready: 0, deferred: 0, inflight: 0, oldestReadySeconds: 0, overdueSeconds: 0 };

/** The main thread's end of the protocol; a transport (`transmit`) carries the messages. */
export abstract class QueueClient implements QueueHandle {
  private nextId = 1;
  private readonly pending = new Map<number, (value: unknown) => void>();
  private started?: { resolve: () => void; reject: (e: Error) => void };
  /** Entries for the queue, sent together once per turn of the event loop (one group commit acknowledges several). */
  private outbox: SpoolEntry[] = [];
  /** Stop was asked: nothing more goes over (what is on disk waits for the next start, or the handoff). */
  protected stopping = false;
  /** Why the queue is gone, if it is: questions are answered empty. */
  dead: string | undefined;

  constructor(private readonly onPermanentFailure?: PermanentFailureListener) {}

  protected abstract transmit(m: ToQueue): void;

  protected receive(m: FromQueue): void {
    if (m.type === 'reply') {
      this.pending.get(m.id)?.(m.value);
      this.pending.delete(m.id);
    } else if (m.type === 'started') this.started?.resolve();
    else if (m.type === 'failed') this.started?.reject(new Error(m.message));
    else this.onPermanentFailure?.(m.failure);
  }

  /** The queue is gone: settle every question, so shutdown and /metrics do not hang. */
  protected gone(reason: string): void {
    if (this.dead) return;
    this.dead = reason;
    this.started?.reject(new Error(reason));
    for (const resolve of this.pending.values()) resolve(undefined);
    this.pending.clear();
  }

  start(recovered: { entries: SpoolEntry[]; segments: SegmentCount[] }): Promise<void> {
    for (const entry of recovered.entries) this.enqueue(entry);
    return new Promise((resolve, reject) => {
      this.started = { resolve, reject };
      this.post({ type: 'start', segments: recovered.segments });
    });
  }

  enqueue(entry: SpoolEntry): void {
    if (this.stopping) return;
    if (!this.outbox.length) setImmediate(() => this.flushOutbox());
    this.outbox.push(entry);
  }

  protected flushOutbox(): void {
    const entries = this.outbox;
    this.outbox = [];
    if (entries.length) this.transmit({ type: 'enqueue', entries });
  }

  sealed(seal: SegmentSealed): void {
    if (!this.stopping) this.post({ type: 'sealed', seal });
  }

  reconfigure(config: RelayConfig): void {
    this.post({ type: 'reconfigure', config });
  }

  async stop(deadlineMs: number): Promise<number> {
    const left = (await this.ask({ type: 'stop', deadlineMs, id: 0 })) as number | undefined;
    this.stopping = true;
    // Stopped: questions from now on (a /metrics scrape during the handoff) are answered empty, not left waiting.
    this.gone('the queue has stopped');
    return left ?? NaN;
  }

  async stats(): Promise<QueueStats> {
    return ((await this.ask({ type: 'stats', id: 0 })) as QueueStats | undefined) ?? NO_STATS;
  }

  async publish(events: RelayEvent[]): Promise<number> {
    return ((await this.ask({ type: 'publish', events, id: 0 })) as number | undefined) ?? 0;
  }

  async metrics(): Promise<MetricsJson> {
    return ((await this.ask({ type: 'metrics', id: 0 })) as MetricsJson | undefined) ?? [];
  }

  private post(m: ToQueue): void {
    if (this.dead) return;
    // Mail accepted before this message (a stop, say) must reach the queue before it.
    this.flushOutbox();
    this.transmit(m);
  }

  private ask(m: Extract<ToQueue, { id: number }>): Promise<unknown> {
    if (this.dead) return Promise.resolve(undefined);
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.post({ ...m, id });
    });
  }
}

/** The queue in a worker thread (relay/queue/worker.ts). */
export class WorkerQueue extends QueueClient {
  private readonly worker: Worker;
  private running = false;

  constructor(config: RelayConfig, logLevel: string, onPermanentFailure?: PermanentFailureListener) {
    super(onPermanentFailure);
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { config, logLevel } });
    this.worker.on('message', (m: FromQueue) => {
      if (m.type === 'started') this.running = true;
      this.receive(m);
    });
    this.worker.on('error', (err) => this.died(err.stack ?? err.message));
    this.worker.on('exit', (code) => {
      if (!this.stopping) this.died(`exited with code ${code}`);
    });
  }

  /** Gives the worker up: not ready, drain, exit non-zero (the restart recovers the spool). */
  private died(reason: string): void {
    if (this.dead) return;
    this.gone(reason);
    // A relay that cannot deliver must not look healthy: exit non-zero through the normal
    // drain, and let the restart recover the spool (nothing accepted is lost).
    // (Before start finished, the rejected start reports it instead.)
    if (!this.running) return;
    process.exitCode = 1;
    process.emitWarning(`queue worker stopped: ${reason}`);
    process.kill(process.pid, 'SIGTERM');
  }

  protected transmit(m: ToQueue): void {
    try {
      if (m.type !== 'enqueue') return this.worker.postMessage(m);
      // A small Buffer is a view into an 8 KiB shared pool: copy just its bytes and move them,
      // so the worker holds what the body cache counts, and nothing of other messages.
      const bodies: ArrayBuffer[] = [];
      const entries = m.entries.map((entry) => {
        if (!entry.body) return entry;
        const body = new Uint8Array(entry.body);
        bodies.push(body.buffer);
        // Fields named, not spread (object spread costs ~1 µs on Node 20's V8, per message).
        return { envelope: entry.envelope, bodyLength: entry.bodyLength, body: body as Buffer, hasState: entry.hasState, location: entry.location };
      });
      this.worker.postMessage({ type: 'enqueue', entries } satisfies ToQueue, bodies);
    } catch (err) {
      // May run from setImmediate: a throw here would end the process without a drain. The mail
      // is on disk either way; the restart delivers it.
      this.died(`could not hand accepted mail to the queue worker: ${(err as Error).message}`);
    }
  }

  override async stop(deadlineMs: number): Promise<number> {
    const left = await super.stop(deadlineMs);
    await this.worker.terminate();
    return left;
  }
}
