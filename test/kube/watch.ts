/**
 * Watch streams: `?watch=true` answers 200 with newline-delimited JSON events as v1.20's watch
 * cache sends them. Without a resourceVersion (or with "0") the stream opens with an ADDED event
 * per existing object; from resourceVersion N it replays the events of that resource after N
 * from its watch cache (store.ts), or sends one ERROR event carrying a 410 Expired Status and
 * ends when the cache no longer reaches back to N; from a resourceVersion the resource has not
 * reached yet it sends only what comes after it. Selectors apply to both the old and new state of
 * an object, so an object that stops matching arrives as DELETED and one that starts matching as
 * ADDED. BOOKMARKs (allowWatchBookmarks) come as the cacher sends them: every bookmark interval
 * (a minute) and 2 s before the watch's timeoutSeconds, carrying the resourceVersion of the
 * resource's last event, and only when that is newer than what the watch has seen; never on
 * Events (served from etcd, no cache). sendInitialEvents=true (v1.27's streaming lists, which
 * v1.20 ignores) closes the initial events with an annotated BOOKMARK.
 */
import type { ServerResponse } from 'node:http';
import type { JsonObject, KubeObject } from './json.js';
import { apiVersionOf, selectableFields, toView, type ResourceDef } from './resources.js';
import { matchesFields, matchesLabels, type FieldRequirement, type LabelRequirement } from './selectors.js';
import { ApiError, errors } from './status.js';
import type { StoredChange, Store } from './store.js';

export interface WatchRequest {
  def: ResourceDef;
  namespace?: string;
  labels: LabelRequirement[];
  fields: FieldRequirement[];
  resourceVersion?: string;
  allowBookmarks: boolean;
  sendInitialEvents: boolean;
  timeoutSeconds?: number;
}

interface OpenWatch {
  storage: string;
  close(): void;
}

export class WatchHub {
  private readonly open = new Set<OpenWatch>();

  constructor(
    private readonly store: Store,
    private readonly bookmarkIntervalMs: number,
  ) {}

  get count(): number {
    return this.open.size;
  }

  serve(request: WatchRequest, res: ServerResponse): void {
    const { def } = request;
    const requested = request.resourceVersion && request.resourceVersion !== '0' ? request.resourceVersion : undefined;
    // The API server parses it with strconv.ParseUint and answers a 500 without a reason.
    if (requested !== undefined && !/^\d+$/.test(requested)) {
      throw new ApiError(500, '', `resourceVersion: Invalid value: ${JSON.stringify(requested)}: strconv.ParseUint: parsing ${JSON.stringify(requested)}: invalid syntax`);
    }
    const fromVersion = requested === undefined ? undefined : Number(requested);
    const cache = this.store.watchCache(def.storage);
    const replay = fromVersion === undefined || request.sendInitialEvents ? [] : cache.since(fromVersion);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    const send = (type: string, object: unknown) => res.write(`${JSON.stringify({ type, object })}\n`);
    if (!replay) {
      send('ERROR', errors.expired(cache.uncached ? 'The resourceVersion for the provided watch is too old.' : `too old resource version: ${fromVersion} (${cache.oldestServable})`).toStatus());
      res.end();
      return;
    }
    const matches = (obj: KubeObject) =>
      (request.namespace === undefined || obj.metadata.namespace === request.namespace) &&
      matchesLabels(request.labels, obj.metadata.labels) &&
      matchesFields(request.fields, selectableFields(def, obj));
    const bookmark = (resourceVersion: number, annotations?: Record<string, string>) => send('BOOKMARK', bookmarkObject(def, resourceVersion, annotations));

    // What the watch has seen: the cacher skips events (and bookmarks) not newer than this.
    let seen = fromVersion ?? 0;
    const deliver = (change: StoredChange) => {
      if (change.storage !== def.storage || change.resourceVersion <= seen) return;
      const now = matches(toView(def, change.object));
      const before = change.previous !== undefined && matches(toView(def, change.previous));
      if (change.type === 'DELETED') {
        if (now) send('DELETED', toView(def, change.object));
      } else if (now) {
        send(before || change.type === 'ADDED' ? change.type : 'ADDED', toView(def, change.object));
      } else if (before) {
        const last = toView(def, change.previous as KubeObject);
        last.metadata.resourceVersion = String(change.resourceVersion);
        send('DELETED', last);
      }
    };

    if (fromVersion === undefined || request.sendInitialEvents) {
      const existing = this.store.list(def.storage);
      for (const stored of existing) {
        const obj = toView(def, stored);
        if (matches(obj)) send('ADDED', obj);
      }
      // The initial events carry the cache's resourceVersion, and the watch goes on from there.
      if (existing.length > 0) seen = Math.max(seen, cache.resourceVersion);
      if (request.sendInitialEvents && request.allowBookmarks) bookmark(cache.resourceVersion, { 'k8s.io/initial-events-end': 'true' });
    } else {
      replay.forEach(deliver);
      seen = Math.max(seen, ...replay.map((c) => c.resourceVersion));
    }

    const unsubscribe = this.store.subscribeWatch(deliver);
    const timers: NodeJS.Timeout[] = [];
    const deadline = request.timeoutSeconds !== undefined ? Date.now() + request.timeoutSeconds * 1000 : undefined;
    // The cacher's bookmark schedule: a minute on, or 2 s before the deadline if that is sooner; none once that has passed.
    const scheduleBookmark = () => {
      const next = Math.min(Date.now() + this.bookmarkIntervalMs, deadline !== undefined ? deadline - 2000 : Infinity);
      if (next < Date.now()) return;
      timers.push(
        setTimeout(() => {
          if (cache.lastEventResourceVersion > seen) bookmark(cache.lastEventResourceVersion);
          scheduleBookmark();
        }, next - Date.now()),
      );
    };
    if (request.allowBookmarks && !cache.uncached) scheduleBookmark();
    const watch: OpenWatch = {
      storage: def.storage,
      close: () => {
        unsubscribe();
        timers.forEach(clearTimeout);
        this.open.delete(watch);
        res.end();
      },
    };
    if (deadline !== undefined) timers.push(setTimeout(watch.close, request.timeoutSeconds! * 1000));
    res.on('close', watch.close);
    this.open.add(watch);
  }

  /** Ends every open watch cleanly, as an API server restart or load balancer timeout would. */
  closeAll(): void {
    for (const watch of [...this.open]) watch.close();
  }

  /** Ends the watches on a resource that is no longer served (its CRD was deleted). */
  closeStorage(storage: string): void {
    for (const watch of [...this.open]) if (watch.storage === storage) watch.close();
  }

  /**
   * A CRD whose spec (or accepted names) changed gets new storage: the watches open on the old
   * one end a second later, when the API server tears it down; new ones see the new storage.
   */
  replaceStorage(storage: string, teardownMs: number): void {
    const old = [...this.open].filter((watch) => watch.storage === storage);
    if (old.length === 0) return;
    setTimeout(() => old.forEach((watch) => watch.close()), teardownMs).unref();
  }
}

/** The object of a BOOKMARK: the kind's empty object (Go's zero value, as the cacher makes it) with the resourceVersion. */
function bookmarkObject(def: ResourceDef, resourceVersion: number, annotations?: Record<string, string>): JsonObject {
  const rv = String(resourceVersion);
  if (def.custom) return { apiVersion: apiVersionOf(def), kind: def.kind, metadata: { resourceVersion: rv, ...(annotations ? { annotations } : {}) } };
  return { kind: def.kind, apiVersion: apiVersionOf(def), metadata: { resourceVersion: rv, creationTimestamp: null, ...(annotations ? { annotations } : {}) }, ...structuredClone(def.bookmarkFields ?? {}) };
}
