/**
 * The controllers' work queue, after client-go's: a key (namespace/name) is queued at most
 * once, is reconciled by one worker at a time (a key added while it is being reconciled runs
 * again afterwards), and failures come back after an exponential backoff. Reconcilers may ask
 * to run again at a time (a DKIM rotation step, a DNS check).
 */
export type ReconcileResult = { requeueAfterMs?: number } | void;

export interface WorkQueueOptions {
  /** Keys reconciled at once (different keys; one key never runs twice at once). */
  concurrency: number;
  baseBackoffMs: number;
  maxBackoffMs: number;
  onResult?: (key: string, outcome: 'success' | 'error', seconds: number, err?: unknown) => void;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly active = new Set<string>();
  /** Keys added while being reconciled: they run again when the current run ends. */
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; at: number }>();
  private running = 0;
  private stopped = false;
  private idle: (() => void)[] = [];

  constructor(
    private readonly reconcile: (key: string) => Promise<ReconcileResult>,
    private readonly options: WorkQueueOptions,
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.stopped) return;
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.drain();
  }

  /** Adds the key after a delay; a pending delay for it that ends sooner is kept. */
  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    const at = Date.now() + Math.max(0, delayMs);
    const pending = this.timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, at - Date.now());
    timer.unref();
    this.timers.set(key, { timer, at });
  }

  /** Stops taking work; resolves when running reconciles have finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
    this.queue.length = 0;
    this.queued.clear();
    if (this.running) await new Promise<void>((r) => this.idle.push(r));
  }

  private drain(): void {
    while (!this.stopped && this.running < this.options.concurrency && this.queue.length) {
      const key = this.queue.shift()!;
      this.queued.delete(key);
      this.active.add(key);
      this.running++;
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const result = await this.reconcile(key);
      this.failures.delete(key);
      this.options.onResult?.(key, 'success', seconds());
      if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      this.options.onResult?.(key, 'error', seconds(), err);
      this.addAfter(key, Math.min(this.options.maxBackoffMs, this.options.baseBackoffMs * 2 ** (n - 1)));
    } finally {
      this.active.delete(key);
      this.running--;
      if (this.dirty.delete(key)) this.add(key);
      this.drain();
      if (!this.running) for (const r of this.idle.splice(0)) r();
    }
  }
}
