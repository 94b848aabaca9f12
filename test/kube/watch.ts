/**
 * Watch streams: `?watch=true` answers 200 with newline-delimited JSON events as the API server's
 * watch cache sends them. Without a resourceVersion (or with "0") the stream opens with an ADDED
 * event per existing object; from resourceVersion N it replays the history after N, or sends one
 * ERROR event carrying a 410 Expired Status and ends when the history no longer reaches back to N.
 * Selectors apply to both the old and new state of an object, so an object that stops matching
 * arrives as DELETED and one that starts matching as ADDED. BOOKMARK events come every
 * bookmark interval when allowWatchBookmarks is set, and after the initial events when
 * sendInitialEvents=true (annotated k8s.io/initial-events-end).
 */
import type { ServerResponse } from 'node:http';
import type { KubeObject } from './json.js';
import { apiVersionOf, selectableFields, toView, type ResourceDef } from './resources.js';
import { matchesFields, matchesLabels, type FieldRequirement, type LabelRequirement } from './selectors.js';
import { errors } from './status.js';
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
    const fromVersion = request.resourceVersion && request.resourceVersion !== '0' ? Number(request.resourceVersion) : undefined;
    if (fromVersion !== undefined && !Number.isInteger(fromVersion)) throw errors.badRequest(`invalid resource version: ${request.resourceVersion}`);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    const send = (type: string, object: unknown) => res.write(`${JSON.stringify({ type, object })}\n`);
    const matches = (obj: KubeObject) =>
      (request.namespace === undefined || obj.metadata.namespace === request.namespace) &&
      matchesLabels(request.labels, obj.metadata.labels) &&
      matchesFields(request.fields, selectableFields(def, obj));
    const bookmark = (annotations?: Record<string, string>) =>
      send('BOOKMARK', { kind: def.kind, apiVersion: apiVersionOf(def), metadata: { resourceVersion: String(this.store.resourceVersion), ...(annotations ? { annotations } : {}) } });

    const deliver = (change: StoredChange) => {
      if (change.storage !== def.storage) return;
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
      for (const stored of this.store.list(def.storage, request.namespace)) {
        const obj = toView(def, stored);
        if (matches(obj)) send('ADDED', obj);
      }
      if (request.sendInitialEvents && request.allowBookmarks) bookmark({ 'k8s.io/initial-events-end': 'true' });
    } else {
      const replay = this.store.changesSince(fromVersion, def.storage);
      if (!replay) {
        const oldest = this.store.oldestServableResourceVersion;
        send('ERROR', errors.expired(`too old resource version: ${request.resourceVersion} (${oldest})`).toStatus());
        res.end();
        return;
      }
      replay.forEach(deliver);
    }

    const unsubscribe = this.store.subscribeWatch(deliver);
    const timers: NodeJS.Timeout[] = [];
    if (request.allowBookmarks) timers.push(setInterval(() => bookmark(), this.bookmarkIntervalMs));
    const watch: OpenWatch = {
      storage: def.storage,
      close: () => {
        unsubscribe();
        timers.forEach(clearTimeout);
        this.open.delete(watch);
        res.end();
      },
    };
    if (request.timeoutSeconds !== undefined) timers.push(setTimeout(watch.close, request.timeoutSeconds * 1000));
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
}
