/**
 * An informer: lists a resource, then watches it from the list's resourceVersion, keeping a
 * cache of the objects. When the watch ends (the server closes it, a network error, 410 Gone
 * for a version too old) it watches again from the last version seen, or relists after a 410
 * or an error. Every resync period each cached key is handed to the handler again, so a
 * missed event can only delay a reconcile, never lose one.
 */
import type { AnyObject, KubeClient } from './client.js';
import { KubeError } from './client.js';

export interface InformerOptions {
  apiVersion: string;
  kind: string;
  /** One namespace, or undefined for all. */
  namespace?: string | undefined;
  /** Only objects with these labels (the operator's own, for kinds it creates). */
  labelSelector?: string;
  resyncMs: number;
  /** Wait before watching again after an error. */
  retryMs?: number;
  /** What is kept of each object (the cache and the handler see only this): e.g. a Secret's key names without its values. */
  transform?: (o: AnyObject) => AnyObject;
  /** A key (namespace/name) whose object changed, appeared or is gone (undefined; `previous` is what was cached). */
  onChange: (key: string, object: AnyObject | undefined, previous: AnyObject | undefined) => void;
  onError?: (err: unknown) => void;
}

export const keyOf = (o: { metadata: { namespace?: string | undefined; name: string } }) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;

export class Informer {
  readonly cache = new Map<string, AnyObject>();
  private resourceVersion = '';
  private stopWatch: (() => void) | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** True after the first list: the cache holds the whole resource. */
  synced = false;

  constructor(
    private readonly client: KubeClient,
    private readonly options: InformerOptions,
  ) {}

  get kind(): string {
    return this.options.kind;
  }

  get apiVersion(): string {
    return this.options.apiVersion;
  }

  /** The namespace watched, or undefined for all. */
  get namespace(): string | undefined {
    return this.options.namespace;
  }

  /** Lists and watches; resolves after the first list, or after its failure (then it keeps trying, and `synced` stays false). */
  async start(): Promise<void> {
    this.resyncTimer = setInterval(() => {
      for (const [key, object] of this.cache) this.options.onChange(key, object, object);
    }, this.options.resyncMs);
    this.resyncTimer.unref();
    try {
      await this.relist();
    } catch (err) {
      this.restart(err ?? new Error('list failed'));
    }
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    clearTimeout(this.retryTimer);
    this.stopWatch?.();
  }

  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.client.list(this.options.apiVersion, this.options.kind, this.options.namespace, this.options.labelSelector);
    const seen = new Set<string>();
    for (const listed of items) {
      const item = this.options.transform ? this.options.transform(listed) : listed;
      const key = keyOf(item);
      seen.add(key);
      const before = this.cache.get(key);
      this.cache.set(key, item);
      if (before?.metadata.resourceVersion !== item.metadata.resourceVersion) this.options.onChange(key, item, before);
    }
    for (const key of [...this.cache.keys()]) {
      if (seen.has(key)) continue;
      const before = this.cache.get(key);
      this.cache.delete(key);
      this.options.onChange(key, undefined, before);
    }
    this.resourceVersion = resourceVersion;
    this.synced = true;
    await this.watch();
  }

  private async watch(): Promise<void> {
    if (this.stopped) return;
    try {
      this.stopWatch = await this.client.watch(
        this.options.apiVersion,
        this.options.kind,
        this.options.namespace,
        this.resourceVersion,
        (event) => {
          if (event.object.metadata.resourceVersion) this.resourceVersion = event.object.metadata.resourceVersion;
          if (event.type === 'BOOKMARK') return;
          const key = keyOf(event.object);
          const before = this.cache.get(key);
          if (event.type === 'DELETED') {
            this.cache.delete(key);
            this.options.onChange(key, undefined, before);
          } else {
            const object = this.options.transform ? this.options.transform(event.object) : event.object;
            this.cache.set(key, object);
            this.options.onChange(key, object, before);
          }
        },
        (err) => this.restart(err),
        this.options.labelSelector,
      );
    } catch (err) {
      this.restart(err);
    }
  }

  /** The watch ended: a clean end watches on from the last version; a 410 or an error relists. */
  private restart(err?: unknown): void {
    if (this.stopped) return;
    if (err && !(err instanceof KubeError && err.code === 410)) this.options.onError?.(err);
    const relist = !!err;
    this.retryTimer = setTimeout(
      () => {
        const next = relist ? this.relist() : this.watch();
        next.catch((e: unknown) => this.restart(e ?? new Error('relist failed')));
      },
      err ? (this.options.retryMs ?? 1000) : 0,
    );
  }
}
