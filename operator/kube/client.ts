/**
 * The operator's door to the Kubernetes API. @kubernetes/client-node 1.x gives the connection
 * (KubeConfig: server, credentials, CA via applyToHTTPSOptions) and the watch streams (Watch).
 * Requests are plain JSON over that connection rather than KubernetesObjectApi, whose model
 * (de)serialisation turns timestamps into Date objects and back for the kinds it knows (a
 * Lease's renewTime among them): the controllers read and write exactly the JSON the API
 * server speaks. Server-side apply uses one field manager. Every request is counted, so a
 * test can measure requests per object at steady state.
 */
import http from 'node:http';
import https from 'node:https';
import { KubeConfig, PatchStrategy, Watch } from '@kubernetes/client-node';
import { FIELD_MANAGER } from '../render/mailrelay.js';

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string | undefined;
  name: string;
}

export interface AnyObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; resourceVersion?: string; generation?: number; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: unknown[]; deletionTimestamp?: string; finalizers?: string[] };
  [key: string]: unknown;
}

export type WatchEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK'; object: AnyObject };

/**
 * An API error with its HTTP status (409 Conflict, 404 NotFound, 410 Gone...). The message
 * names the request (method and path) and then the API server's own words, so a log line or
 * a condition says which object and which API failed, not only "the server could not find the
 * requested resource".
 */
export class KubeError extends Error {
  constructor(
    readonly code: number,
    message: string,
    /** The Status reason (NotFound, Conflict, Forbidden, Invalid...), when the server gave one. */
    readonly reason?: string,
  ) {
    super(message);
  }
}

/** The resources the operator touches: their plural names and scope (no discovery round trips). */
const RESOURCES: Record<string, { plural: string; namespaced: boolean }> = {
  'mailfleet.io/v1alpha1/MailRelay': { plural: 'mailrelays', namespaced: true },
  'mailfleet.io/v1alpha1/SenderDomain': { plural: 'senderdomains', namespaced: true },
  'v1/Secret': { plural: 'secrets', namespaced: true },
  'v1/ConfigMap': { plural: 'configmaps', namespaced: true },
  'v1/Service': { plural: 'services', namespaced: true },
  'v1/Pod': { plural: 'pods', namespaced: true },
  'v1/Event': { plural: 'events', namespaced: true },
  'v1/Namespace': { plural: 'namespaces', namespaced: false },
  'apps/v1/Deployment': { plural: 'deployments', namespaced: true },
  'policy/v1/PodDisruptionBudget': { plural: 'poddisruptionbudgets', namespaced: true },
  'networking.k8s.io/v1/Ingress': { plural: 'ingresses', namespaced: true },
  'coordination.k8s.io/v1/Lease': { plural: 'leases', namespaced: true },
  'monitoring.coreos.com/v1/ServiceMonitor': { plural: 'servicemonitors', namespaced: true },
  'externaldns.k8s.io/v1alpha1/DNSEndpoint': { plural: 'dnsendpoints', namespaced: true },
  'apiextensions.k8s.io/v1/CustomResourceDefinition': { plural: 'customresourcedefinitions', namespaced: false },
};

export function resourcePath(apiVersion: string, kind: string, namespace?: string, name?: string): string {
  const r = RESOURCES[`${apiVersion}/${kind}`];
  if (!r) throw new Error(`unknown resource ${apiVersion} ${kind}`);
  const base = apiVersion === 'v1' ? '/api/v1' : `/apis/${apiVersion}`;
  return `${base}${r.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : ''}/${r.plural}${name ? `/${encodeURIComponent(name)}` : ''}`;
}

export class KubeClient {
  private readonly watcher: Watch;

  constructor(
    readonly config: KubeConfig,
    private readonly countRequest: (verb: string) => void = () => undefined,
  ) {
    this.watcher = new Watch(config);
  }

  private async request<T>(verb: string, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    this.countRequest(verb);
    const server = this.config.getCurrentCluster()?.server;
    if (!server) throw new Error('the kubeconfig names no cluster server');
    // client-node fills in the agent (CA, client certificate, proxy) and the credentials.
    const options: https.RequestOptions = { method, headers: { accept: 'application/json' } };
    await this.config.applyToHTTPSOptions(options);
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    if (payload !== undefined) options.headers = { ...options.headers, 'content-type': contentType, 'content-length': Buffer.byteLength(payload) };
    const url = new URL(path, server);
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? https : http).request(url, options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
      req.on('error', reject);
      req.end(payload);
    });
    let json: T & { message?: string; reason?: string };
    try {
      json = (text ? JSON.parse(text) : {}) as T & { message?: string; reason?: string };
    } catch {
      throw new KubeError(status, `${method} ${path}: HTTP ${status}: ${text.slice(0, 200)}`);
    }
    if (status < 200 || status >= 300) throw new KubeError(status, `${method} ${path}: ${status} ${json.message ?? `HTTP ${status}`}`, json.reason);
    return json;
  }

  /** A request the helpers below do not cover (discovery, a subresource), as JSON. */
  raw<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    return this.request<T>(method.toLowerCase(), method, path, body, contentType);
  }

  /** Whether the API server serves a group/version (discovery): false on 404, as for policy/v1 on v1.20. */
  async serves(apiVersion: string): Promise<boolean> {
    try {
      await this.request('discovery', 'GET', apiVersion === 'v1' ? '/api/v1' : `/apis/${apiVersion}`);
      return true;
    } catch (err) {
      if (err instanceof KubeError && err.code === 404) return false;
      throw err;
    }
  }

  /** The object, or undefined when it does not exist. */
  async get<T extends AnyObject>(ref: ObjectRef): Promise<T | undefined> {
    try {
      return await this.request<T>('get', 'GET', resourcePath(ref.apiVersion, ref.kind, ref.namespace, ref.name));
    } catch (err) {
      if (err instanceof KubeError && err.code === 404) return undefined;
      throw err;
    }
  }

  async list<T extends AnyObject>(apiVersion: string, kind: string, namespace?: string, labelSelector?: string): Promise<{ items: T[]; resourceVersion: string }> {
    const query = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : '';
    const list = await this.request<{ items: T[]; metadata?: { resourceVersion?: string } }>('list', 'GET', resourcePath(apiVersion, kind, namespace) + query);
    // Items of a list come without apiVersion and kind: put them back, callers use them.
    return { items: list.items.map((i) => ({ ...i, apiVersion, kind })), resourceVersion: list.metadata?.resourceVersion ?? '' };
  }

  /** Server-side apply with the operator's field manager (forced: it owns what it renders); creates when missing. */
  async apply<T extends AnyObject>(object: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string | undefined }; [field: string]: unknown }): Promise<T> {
    const path = `${resourcePath(object.apiVersion, object.kind, object.metadata.namespace, object.metadata.name)}?fieldManager=${FIELD_MANAGER}&force=true`;
    return this.request<T>('apply', 'PATCH', path, object, PatchStrategy.ServerSideApply);
  }

  async create<T extends AnyObject>(object: AnyObject): Promise<T> {
    return this.request<T>('create', 'POST', resourcePath(object.apiVersion, object.kind, object.metadata.namespace), object);
  }

  /** PUT with the object's resourceVersion: 409 when someone wrote it since it was read. */
  async replace<T extends AnyObject>(object: AnyObject): Promise<T> {
    return this.request<T>('update', 'PUT', resourcePath(object.apiVersion, object.kind, object.metadata.namespace, object.metadata.name), object);
  }

  async delete(ref: ObjectRef): Promise<void> {
    try {
      await this.request('delete', 'DELETE', resourcePath(ref.apiVersion, ref.kind, ref.namespace, ref.name));
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 404)) throw err;
    }
  }

  /** A merge patch of the status subresource (conditions, observedGeneration...); with a resourceVersion, refused (409) when the object changed since (for lists such as conditions, which a merge patch replaces whole). */
  async patchStatus<T extends AnyObject>(ref: ObjectRef, status: unknown, resourceVersion?: string): Promise<T> {
    return this.request<T>('patch_status', 'PATCH', `${resourcePath(ref.apiVersion, ref.kind, ref.namespace, ref.name)}/status`, { ...(resourceVersion ? { metadata: { resourceVersion } } : {}), status }, PatchStrategy.MergePatch);
  }

  /** A merge patch of the object (an annotation, finalizers). */
  async patch<T extends AnyObject>(ref: ObjectRef, patch: unknown): Promise<T> {
    return this.request<T>('patch', 'PATCH', resourcePath(ref.apiVersion, ref.kind, ref.namespace, ref.name), patch, PatchStrategy.MergePatch);
  }

  /**
   * Watches a resource from a resourceVersion. Resolves with a stop function; `done` is called
   * when the stream ends, with the error (a KubeError 410 when the version is too old: relist).
   */
  async watch(apiVersion: string, kind: string, namespace: string | undefined, resourceVersion: string, onEvent: (e: WatchEvent) => void, done: (err?: unknown) => void, labelSelector?: string): Promise<() => void> {
    this.countRequest('watch');
    let finished = false;
    const finish = (err?: unknown) => {
      if (finished) return;
      finished = true;
      done(err);
    };
    const controller = await this.watcher.watch(
      resourcePath(apiVersion, kind, namespace),
      { resourceVersion, allowWatchBookmarks: true, ...(labelSelector ? { labelSelector } : {}) },
      (type, object: AnyObject) => {
        if (type === 'ERROR') {
          const status = object as unknown as { code?: number; message?: string };
          return finish(new KubeError(status.code ?? 500, status.message ?? 'watch error'));
        }
        onEvent({ type: type as WatchEvent['type'], object: { ...object, apiVersion, kind } });
      },
      (err: unknown) => finish(err ?? undefined),
    );
    return () => {
      finished = true;
      controller.abort();
    };
  }
}
