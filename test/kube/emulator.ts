/**
 * An HTTP-level Kubernetes API emulator for the operator's tests: the real
 * @kubernetes/client-node talks to it over HTTP as to a cluster (paths, verbs, content types,
 * metav1.Status errors, watch streams), and it behaves as kube-apiserver and the controllers a
 * controller depends on behave. README.md beside this file lists what it models and what it does not.
 *
 * Models: storage of the built-in kinds the operator uses and of any custom resource once its CRD
 * exists (404 before); discovery; one global resourceVersion with optimistic concurrency (409
 * Conflict, AlreadyExists, NotFound as Status objects); generation; status and scale subresources;
 * merge, JSON, strategic merge (approximate) patches and server-side apply with managedFields and
 * conflicts; request bodies decoded as the API server does where it matters (Time and MicroTime,
 * with Go's errors); watches from per-resource watch caches sized as v1.20's, with its bookmarks,
 * selectors and 410 Expired; label and field selectors; finalizers; owner-reference garbage
 * collection (Background, Foreground, Orphan); namespace and CRD deletion; CRD validation (RE2
 * patterns) and schema pruning, defaulting and validation; optional Deployment controllers
 * (everything available, or v1.20's without a kubelet).
 *
 * Does not model: authentication and authorization (any or no token is accepted), admission
 * webhooks, CEL rules (x-kubernetes-validations), `format` checks and validation ratcheting,
 * version conversion beyond apiVersion (and the two Event APIs), protobuf and Table output,
 * list resourceVersion semantics (lists always serve the latest state), consistent pagination
 * snapshots, ReplicaSet and Pod objects behind Deployments (no kubelet: see the `onChange` hook),
 * graceful deletion of Pods that are not bound to a node, orphaning through the `orphan`
 * finalizer (done at once instead), and SMD's finer points of field ownership (see apply.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { builtinResources } from './builtins.js';
import { Controllers, Scheduler } from './controllers.js';
import { wellKnownCrds } from './crd.js';
import type { KubeObject } from './json.js';
import { Registry } from './registry.js';
import { RequestLog, type InjectedFailure, type RequestMatcher, type RequestRecord } from './requests.js';
import { ResourceRegistry, toView, type ResourceDef } from './resources.js';
import { ApiHandler } from './server.js';
import type { ChangeType } from './store.js';
import { Store, WATCH_CACHE_V1_20, type WatchCacheSizing } from './store.js';
import { WatchHub } from './watch.js';

export type { KubeObject } from './json.js';
export type { InjectedFailure, RequestMatcher, RequestRecord } from './requests.js';

export interface KubeEmulatorOptions {
  /** CustomResourceDefinitions served from the start (the operator's own, for instance). */
  crds?: object[];
  /** Third-party CRDs a cluster may have, which the operator uses only where they exist. */
  thirdPartyCrds?: ('ServiceMonitor' | 'DNSEndpoint')[];
  /** Namespaces to create besides default, kube-system, kube-public and kube-node-lease. */
  namespaces?: string[];
  /** Report each Deployment fully available (readyReplicas = replicas, observedGeneration = generation) shortly after it changes. Off by default. */
  deploymentsBecomeAvailable?: boolean | { afterMs: number };
  /**
   * Run v1.20's Deployment controller as on a cluster without kubelet: every Deployment rolls out
   * (revision, observedGeneration, replicas, updatedReplicas) and stays unavailable
   * (unavailableReplicas, Available False, Progressing ... ProgressDeadlineExceeded). Off by default.
   */
  deploymentsUnavailable?: boolean | { afterMs: number };
  /**
   * Each resource's watch cache, as v1.20 sizes it by default (100 events, doubling while its
   * oldest is younger than 75 s, up to 102400): a watch resuming from before the window gets 410.
   */
  watchCache?: Partial<WatchCacheSizing>;
  /** A fixed number of events per resource's watch cache (a test knob: the real one grows while events are fresh). */
  historySize?: number;
  /** How often watches that allow bookmarks get one (when the resource has changed since). Default 60000 ms, as v1.20's cacher. */
  bookmarkIntervalMs?: number;
  /** How long after a CRD's spec changes the watches on its resource end (the API server tears the old storage down). Default 1000 ms. */
  crdTeardownMs?: number;
  /** Delay before the garbage collector acts on a change. Default 0 (still asynchronous, as on a cluster). */
  gcDelayMs?: number;
}

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
}

export interface ObjectChange {
  type: ChangeType;
  apiVersion: string;
  kind: string;
  /** The object after the change; for DELETED its last state. */
  object: KubeObject;
  previous?: KubeObject;
}

export interface KubeEmulator {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** A KubeConfig pointing at the emulator (context namespace `default` unless given). */
  kubeConfig(namespace?: string): KubeConfig;
  /** Reads an object straight from storage, as the given apiVersion shows it, for assertions. */
  get(ref: ObjectRef & { name: string }): KubeObject | undefined;
  list(ref: ObjectRef): KubeObject[];
  /** The current global resourceVersion. */
  resourceVersion(): string;
  /** Every committed change, in order (a hook for a kubelet stand-in). Returns an unsubscribe function. */
  onChange(listener: (change: ObjectChange) => void): () => void;
  requests(): readonly RequestRecord[];
  requestCount(matcher?: RequestMatcher): number;
  resetRequests(): void;
  /** The next request(s) matching `matcher` fail with this status (a number, or code and reason, message, Retry-After). */
  failNext(matcher: RequestMatcher, failure: number | InjectedFailure): void;
  /** Every resource's watch cache forgets its events: a watch resuming from any earlier resourceVersion gets 410 Expired. */
  compactHistory(): void;
  /** Ends every open watch cleanly, so clients must reconnect. */
  closeWatches(): void;
  openWatchCount(): number;
  /** Resolves when the emulator's controllers (garbage collector, namespace and CRD cleanup, Deployment status) have nothing pending. */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

function requireDef(resources: ResourceRegistry, ref: ObjectRef): ResourceDef {
  const def = resources.findByKind(ref.apiVersion, ref.kind);
  if (!def) throw new Error(`the emulator does not serve ${ref.apiVersion} ${ref.kind}`);
  return def;
}

export async function startKubeEmulator(options: KubeEmulatorOptions = {}): Promise<KubeEmulator> {
  const resources = new ResourceRegistry();
  for (const def of builtinResources()) resources.add(def);
  const sizing: WatchCacheSizing = { ...WATCH_CACHE_V1_20, ...options.watchCache, ...(options.historySize !== undefined ? { minEvents: options.historySize, maxEvents: options.historySize } : {}) };
  const store = new Store(sizing);
  // The built-in resources' watch caches start with the API server; a custom resource's on its first request.
  for (const def of resources.storages()) store.watchCache(def.storage);
  const watches = new WatchHub(store, options.bookmarkIntervalMs ?? 60_000);
  const registry = new Registry(
    resources,
    store,
    (storage) => watches.closeStorage(storage),
    (storage) => {
      if (!store.hasWatchCache(storage)) return;
      store.dropWatchCache(storage);
      watches.replaceStorage(storage, options.crdTeardownMs ?? 1000);
    },
  );
  const scheduler = new Scheduler();
  const available = options.deploymentsBecomeAvailable;
  const unavailable = options.deploymentsUnavailable;
  if (available && unavailable) throw new Error('deploymentsBecomeAvailable and deploymentsUnavailable exclude each other');
  const controllers = new Controllers(registry, scheduler, {
    gcDelayMs: options.gcDelayMs ?? 0,
    ...(available ? { deploymentAvailableAfterMs: available === true ? 20 : available.afterMs } : {}),
    ...(unavailable ? { deploymentUnavailableDelayMs: unavailable === true ? 5 : unavailable.afterMs } : {}),
  });
  const stopControllers = controllers.start();
  const log = new RequestLog();

  const setup = { fieldManager: 'kube-apiserver', dryRun: false };
  const namespaces = resources.find('', 'v1', 'namespaces') as ResourceDef;
  for (const name of [...SYSTEM_NAMESPACES, ...(options.namespaces ?? [])]) registry.create(namespaces, undefined, { metadata: { name } }, setup);
  const crds = resources.find('apiextensions.k8s.io', 'v1', 'customresourcedefinitions') as ResourceDef;
  for (const crd of [...(options.thirdPartyCrds ?? []).map((name) => wellKnownCrds[name]()), ...(options.crds ?? [])]) registry.create(crds, undefined, crd, setup);
  await scheduler.settled();

  const handler = new ApiHandler(registry, watches, log);
  const server: Server = createServer((req, res) => void handler.handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    kubeConfig(namespace = 'default') {
      const kc = new KubeConfig();
      kc.loadFromOptions({
        // client-node refuses plain http unless skipTLSVerify is set.
        clusters: [{ name: 'emulator', server: url, skipTLSVerify: true }],
        users: [{ name: 'emulator', token: 'emulator' }],
        contexts: [{ name: 'emulator', cluster: 'emulator', user: 'emulator', namespace }],
        currentContext: 'emulator',
      });
      return kc;
    },
    get(ref) {
      const def = requireDef(resources, ref);
      return registry.find(def, ref.namespace, ref.name);
    },
    list(ref) {
      const def = requireDef(resources, ref);
      return store.list(def.storage, def.namespaced ? ref.namespace : undefined).map((stored) => toView(def, stored));
    },
    resourceVersion: () => String(store.resourceVersion),
    onChange(listener) {
      return store.onChange((change) => {
        const def = resources.storages().find((d) => d.storage === change.storage);
        if (!def) return;
        listener({
          type: change.type,
          apiVersion: toView(def, change.object).apiVersion as string,
          kind: def.kind,
          object: toView(def, change.object),
          ...(change.previous ? { previous: toView(def, change.previous) } : {}),
        });
      });
    },
    requests: () => log.records,
    requestCount: (matcher) => log.count(matcher),
    resetRequests: () => {
      log.records.length = 0;
    },
    failNext: (matcher, failure) => log.failNext(matcher, failure),
    compactHistory: () => store.compact(),
    closeWatches: () => watches.closeAll(),
    openWatchCount: () => watches.count,
    settled: () => scheduler.settled(),
    async stop() {
      stopControllers();
      scheduler.stop();
      watches.closeAll();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
