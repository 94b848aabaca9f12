/**
 * The etcd stand-in: stored objects by storage and namespace/name, one global resourceVersion
 * counter that every write bumps, and a bounded history of changes that watches replay from.
 * Watches subscribe synchronously, so they see changes in commit order; in-process listeners
 * (controllers, tests, a kubelet stand-in) are notified through a queue, in the same order, even
 * when a listener writes while being notified.
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

function keyOf(obj: KubeObject): string {
  const { namespace, name } = obj.metadata;
  return namespace ? `${namespace}/${name}` : (name as string);
}

export class Store {
  private revision: number;
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private readonly history: StoredChange[] = [];
  /** Watches from a resourceVersion below this can no longer be served (410 Expired). */
  private oldestServable: number;
  private readonly watchers = new Set<(change: StoredChange) => void>();
  private readonly listeners = new Set<(change: StoredChange) => void>();
  private readonly pendingNotifications: StoredChange[] = [];
  private notifying = false;

  constructor(private readonly historyLimit: number, initialRevision = 1) {
    this.revision = initialRevision;
    this.oldestServable = initialRevision;
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
    this.history.push(change);
    while (this.history.length > this.historyLimit) this.oldestServable = (this.history.shift() as StoredChange).resourceVersion;
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

  /** Changes after `resourceVersion` for one storage, or undefined when the history no longer reaches back that far. */
  changesSince(resourceVersion: number, storage: string): StoredChange[] | undefined {
    if (resourceVersion < this.oldestServable) return undefined;
    return this.history.filter((c) => c.resourceVersion > resourceVersion && c.storage === storage);
  }

  get oldestServableResourceVersion(): number {
    return this.oldestServable;
  }

  compact(): void {
    this.history.length = 0;
    this.oldestServable = this.revision;
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
