/**
 * The etcd stand-in: stored objects by storage and namespace/name, one global resourceVersion
 * counter that every write bumps, and per resource type the watch cache watches replay from
 * (the API server's cacher: one per resource, started from a list at some resourceVersion,
 * keeping a window of that resource's events). Watches subscribe synchronously, so they see
 * changes in commit order; in-process listeners (controllers, tests, a kubelet stand-in) are
 * notified through a queue, in the same order, even when a listener writes while being notified.
 */
import { clone, type KubeObject } from './json.js';

export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoredChange {
  type: ChangeType;
  storage: string;
  resourceVersion: number;
  /** The object after the change; for DELETED its last state, carrying the deletion's resourceVersion. */
  object: KubeObject;
  previous?: KubeObject;
}

/**
 * How many events a watch cache keeps. v1.20's: 100 to start with; when it is full and its oldest
 * event is younger than 75 s it doubles (up to 102400), when a quarter of it is older it halves
 * (not below 100); otherwise the oldest event goes.
 */
export interface WatchCacheSizing {
  minEvents: number;
  maxEvents: number;
  freshMs: number;
}

export const WATCH_CACHE_V1_20: WatchCacheSizing = { minEvents: 100, maxEvents: 100 * 1024, freshMs: 75_000 };

/** No bound: the etcd watch a resource without a watch cache (Events) is served from, until compaction. */
const UNBOUNDED: WatchCacheSizing = { minEvents: Infinity, maxEvents: Infinity, freshMs: 0 };

/** The API server's watchCache for one resource (k8s.io/apiserver/pkg/storage/cacher/watch_cache.go). */
export class WatchCache {
  private events: (StoredChange & { recordedAt: number })[] = [];
  private capacity: number;
  /** Whether an event ever left the window (before that, the list's resourceVersion is the floor). */
  private evicted = false;
  /** The last event of this resource (0 before the first): what BOOKMARKs carry. */
  lastEventResourceVersion = 0;

  constructor(
    /** The resourceVersion of the list the cache started from. */
    private listResourceVersion: number,
    private readonly sizing: WatchCacheSizing,
    /** An etcd watch (no cache): other 410 wording, no bookmarks. */
    readonly uncached: boolean,
  ) {
    this.capacity = sizing.minEvents;
  }

  /** The cache's current resourceVersion (initial events of a watch from "0" carry it). */
  get resourceVersion(): number {
    return Math.max(this.listResourceVersion, this.lastEventResourceVersion);
  }

  add(change: StoredChange, now: number): void {
    const { events, sizing } = this;
    const full = () => events.length >= this.capacity;
    if (full()) {
      if (now - (events[0] as { recordedAt: number }).recordedAt < sizing.freshMs) {
        this.capacity = Math.min(this.capacity * 2, sizing.maxEvents);
      } else if (now - (events[events.length - Math.floor(this.capacity / 4)] as { recordedAt: number }).recordedAt > sizing.freshMs) {
        const smaller = Math.max(Math.floor(this.capacity / 2), sizing.minEvents);
        if (smaller < this.capacity) {
          events.splice(0, events.length - smaller);
          this.evicted = true;
          this.capacity = smaller;
        }
      }
    }
    if (full()) {
      events.shift();
      this.evicted = true;
    }
    events.push({ ...change, recordedAt: now });
    this.lastEventResourceVersion = change.resourceVersion;
  }

  /** The oldest resourceVersion a watch may resume from (Go: oldest - 1). */
  get oldestServable(): number {
    return this.evicted && this.events[0] ? this.events[0].resourceVersion - 1 : this.listResourceVersion;
  }

  /** Events after `resourceVersion`, or undefined when the window no longer reaches back that far (410). */
  since(resourceVersion: number): StoredChange[] | undefined {
    if (resourceVersion < this.oldestServable) return undefined;
    return this.events.filter((c) => c.resourceVersion > resourceVersion);
  }

  /** Forgets every event, as a relist at `resourceVersion` (or a compacted etcd) would. */
  reset(resourceVersion: number): void {
    this.events = [];
    this.evicted = false;
    this.listResourceVersion = resourceVersion;
  }
}

function keyOf(obj: KubeObject): string {
  const { namespace, name } = obj.metadata;
  return namespace ? `${namespace}/${name}` : (name as string);
}

export class Store {
  private revision: number;
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private readonly caches = new Map<string, WatchCache>();
  private readonly watchers = new Set<(change: StoredChange) => void>();
  private readonly listeners = new Set<(change: StoredChange) => void>();
  private readonly pendingNotifications: StoredChange[] = [];
  private notifying = false;

  constructor(
    private readonly sizing: WatchCacheSizing = WATCH_CACHE_V1_20,
    /** Storages without a watch cache (v1.20 serves Event watches from etcd). */
    private readonly uncached: ReadonlySet<string> = new Set(['events']),
    initialRevision = 1,
    private readonly now: () => number = Date.now,
  ) {
    this.revision = initialRevision;
  }

  /** The watch cache of a storage, started now from the current resourceVersion if it has none (the API server starts one on the first request). */
  watchCache(storage: string): WatchCache {
    let cache = this.caches.get(storage);
    if (!cache) {
      const uncached = this.uncached.has(storage);
      cache = new WatchCache(this.revision, uncached ? UNBOUNDED : this.sizing, uncached);
      this.caches.set(storage, cache);
    }
    return cache;
  }

  hasWatchCache(storage: string): boolean {
    return this.caches.has(storage);
  }

  /** Drops a storage's watch cache (its CRD changed: the API server makes new storage, and a new cache on the next request). */
  dropWatchCache(storage: string): void {
    this.caches.delete(storage);
  }

  get resourceVersion(): number {
    return this.revision;
  }

  get(storage: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const found = this.objects.get(storage)?.get(namespace ? `${namespace}/${name}` : name);
    return found && clone(found);
  }

  /** Objects in key order (namespace, then name), as etcd lists them. */
  /** The stored objects themselves, unsorted and not copied: for read-only scans that must be cheap. */
  *scan(storage: string): Iterable<Readonly<KubeObject>> {
    yield* this.objects.get(storage)?.values() ?? [];
  }

  list(storage: string, namespace?: string): KubeObject[] {
    const all = [...(this.objects.get(storage)?.entries() ?? [])].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return all.map(([, obj]) => obj).filter((obj) => namespace === undefined || obj.metadata.namespace === namespace).map((obj) => clone(obj));
  }

  create(storage: string, obj: KubeObject): KubeObject {
    return this.commit('ADDED', storage, obj, undefined);
  }

  update(storage: string, obj: KubeObject, previous: KubeObject): KubeObject {
    return this.commit('MODIFIED', storage, obj, previous);
  }

  remove(storage: string, obj: KubeObject): KubeObject {
    return this.commit('DELETED', storage, obj, obj);
  }

  /** Removes every object of a storage without events (a CRD's instances once the CRD is gone). */
  drop(storage: string): void {
    this.objects.delete(storage);
  }

  private commit(type: ChangeType, storage: string, obj: KubeObject, previous: KubeObject | undefined): KubeObject {
    const stored = clone(obj);
    stored.metadata.resourceVersion = String(++this.revision);
    const collection = this.objects.get(storage) ?? new Map<string, KubeObject>();
    this.objects.set(storage, collection);
    if (type === 'DELETED') collection.delete(keyOf(stored));
    else collection.set(keyOf(stored), stored);
    const change: StoredChange = { type, storage, resourceVersion: this.revision, object: clone(stored), ...(previous ? { previous: clone(previous) } : {}) };
    this.caches.get(storage)?.add(change, this.now());
    for (const watcher of this.watchers) watcher(change);
    this.notify(change);
    return clone(stored);
  }

  private notify(change: StoredChange): void {
    this.pendingNotifications.push(change);
    if (this.notifying) return;
    this.notifying = true;
    try {
      for (let next = this.pendingNotifications.shift(); next; next = this.pendingNotifications.shift()) {
        for (const listener of this.listeners) listener(next);
      }
    } finally {
      this.notifying = false;
    }
  }

  /** Every watch cache forgets its events: a watch resuming from any earlier resourceVersion gets 410. */
  compact(): void {
    for (const cache of this.caches.values()) cache.reset(this.revision);
  }

  subscribeWatch(watcher: (change: StoredChange) => void): () => void {
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  }

  onChange(listener: (change: StoredChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
