/**
 * The control-plane loops a cluster runs behind the API, reduced to what an operator observes:
 * the garbage collector (owner references, Background/Foreground propagation), the namespace
 * controller (empties a terminating namespace, then finalizes it), the CRD controllers (marks a
 * CRD Established; on deletion removes its instances, then its cleanup finalizer), and
 * optionally a Deployment controller: one that reports every Deployment fully available, or
 * v1.20's on a cluster without kubelet (deployment-controller.ts: rolled out, never available). They run
 * asynchronously after the change that triggers them, like the real ones; `settled()` waits for them.
 */
import { CRD_CLEANUP_FINALIZER } from './crd.js';
import { clone, getPath, isObject, timestamp, type Json, type JsonObject, type KubeObject, type OwnerReference } from './json.js';
import { isCrdDef, isNamespaceDef, type Registry } from './registry.js';
import { toView, type ResourceDef } from './resources.js';
import { DeploymentController } from './deployment-controller.js';
import { ApiError } from './status.js';
import type { StoredChange } from './store.js';

/** Keyed, deduplicated timers: a task already pending is not queued twice (it will read the latest state when it runs). */
export class Scheduler {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private waiters: (() => void)[] = [];
  private stopped = false;

  schedule(key: string, delayMs: number, task: () => void): void {
    if (this.stopped || this.timers.has(key)) return;
    const timer = setTimeout(() => {
      this.timers.delete(key);
      try {
        task();
      } catch (err) {
        // A write that lost a race (the object went away or changed) is retried on the next change, as a controller would.
        if (!(err instanceof ApiError && (err.code === 404 || err.code === 409))) throw err;
      } finally {
        if (this.timers.size === 0) this.releaseWaiters();
      }
    }, delayMs);
    this.timers.set(key, timer);
  }

  /** Resolves once no task is pending (tasks scheduled by tasks included). */
  settled(): Promise<void> {
    return this.timers.size === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.releaseWaiters();
  }

  private releaseWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    waiters.forEach((resolve) => resolve());
  }
}

export interface ControllerOptions {
  gcDelayMs: number;
  /** When set, each Deployment is reported available this long after it changes. */
  deploymentAvailableAfterMs?: number;
  /** When set, the Deployment controller of a cluster without kubelet runs, acting this long after each change. */
  deploymentUnavailableDelayMs?: number;
}

interface Located {
  def: ResourceDef;
  obj: KubeObject;
}

export class Controllers {
  private readonly deployments?: DeploymentController;

  constructor(
    private readonly registry: Registry,
    private readonly scheduler: Scheduler,
    private readonly options: ControllerOptions,
  ) {
    const deployments = registry.resources.find('apps', 'v1', 'deployments');
    if (options.deploymentUnavailableDelayMs !== undefined && deployments) this.deployments = new DeploymentController(registry, deployments, scheduler, options.deploymentUnavailableDelayMs);
  }

  start(): () => void {
    const unsubscribe = this.registry.store.onChange((change) => this.react(change));
    return () => {
      unsubscribe();
      this.deployments?.stop();
    };
  }

  private react(change: StoredChange): void {
    const meta = change.object.metadata;
    const { scheduler } = this;
    // The collector walks everything: run it when an owner may have gone (a deletion). An
    // object whose owners changed may name one that does not exist: a pass too, but only if
    // one of its owners is missing (a uid lookup), not on every write of an owned object.
    const ownersChanged = JSON.stringify(change.previous?.metadata.ownerReferences ?? []) !== JSON.stringify(meta.ownerReferences ?? []);
    if (change.type === 'DELETED' || meta.deletionTimestamp || (meta.ownerReferences?.length && ownersChanged && this.missesAnOwner(meta.ownerReferences))) {
      scheduler.schedule('garbage-collector', this.options.gcDelayMs, () => this.collectGarbage());
    }
    if (change.type === 'DELETED' || meta.deletionTimestamp) {
      scheduler.schedule('namespace-controller', 0, () => this.cleanUpNamespaces());
      scheduler.schedule('crd-cleanup', 0, () => this.cleanUpCrds());
    }
    const def = this.registry.resources.storages().find((d) => d.storage === change.storage);
    if (this.deployments && change.storage === 'apps/deployments') {
      if (change.type === 'DELETED') this.deployments.forget(meta.namespace as string, meta.name as string);
      else this.deployments.enqueue(meta.namespace as string, meta.name as string);
    }
    if (!def || change.type === 'DELETED') return;
    if (isCrdDef(def) && change.type === 'ADDED') scheduler.schedule(`crd-establish/${meta.name}`, 0, () => this.establish(def, meta.name as string));
    const availableAfter = this.options.deploymentAvailableAfterMs;
    if (availableAfter !== undefined && def.group === 'apps' && def.plural === 'deployments') {
      scheduler.schedule(`deployment/${meta.namespace}/${meta.name}`, availableAfter, () => this.reportAvailable(def, meta.namespace as string, meta.name as string));
    }
  }

  private missesAnOwner(refs: OwnerReference[]): boolean {
    const uids = new Set(refs.map((r) => r.uid));
    for (const def of this.registry.resources.storages()) {
      for (const stored of this.registry.store.scan(def.storage)) {
        uids.delete(stored.metadata.uid as string);
        if (!uids.size) return false;
      }
    }
    return true;
  }

  private everything(): Located[] {
    return this.registry.resources.storages().flatMap((def) => this.registry.store.list(def.storage).map((stored) => ({ def, obj: toView(def, stored) })));
  }

  /** One garbage-collector pass; changes it makes trigger the next pass, which walks chains of owners down. */
  private collectGarbage(): void {
    const everything = this.everything();
    const byUid = new Map(everything.map((located) => [located.obj.metadata.uid, located]));
    const liveOwner = (ref: OwnerReference, dependent: KubeObject) => {
      const owner = byUid.get(ref.uid);
      // A namespaced owner only counts from its own namespace.
      if (!owner || (owner.def.namespaced && owner.obj.metadata.namespace !== dependent.metadata.namespace)) return undefined;
      return owner.obj;
    };
    for (const { def, obj } of everything) {
      const refs = obj.metadata.ownerReferences ?? [];
      if (refs.length === 0) continue;
      const current = this.registry.find(def, obj.metadata.namespace, obj.metadata.name as string);
      if (!current) continue;
      const owners = refs.map((ref) => liveOwner(ref, current));
      const deletingForeground = owners.some((owner) => owner?.metadata.deletionTimestamp && owner.metadata.finalizers?.includes('foregroundDeletion'));
      const { namespace, name } = current.metadata;
      if (owners.every((owner) => !owner) || deletingForeground) {
        if (!current.metadata.deletionTimestamp) {
          this.registry.delete(def, namespace, name as string, { dryRun: false, propagationPolicy: deletingForeground ? 'Foreground' : 'Background' });
        }
      } else if (owners.some((owner) => !owner)) {
        const next = clone(current);
        next.metadata.ownerReferences = refs.filter((ref) => liveOwner(ref, current));
        this.registry.systemUpdate(def, current, next);
      }
    }
    const remaining = this.everything();
    for (const { def, obj } of remaining) {
      if (!obj.metadata.deletionTimestamp || !obj.metadata.finalizers?.includes('foregroundDeletion')) continue;
      // A foreground deletion waits only for dependents that block it.
      const blocked = remaining.some(({ obj: dependent }) =>
        (dependent.metadata.ownerReferences ?? []).some((ref) => ref.uid === obj.metadata.uid && ref.blockOwnerDeletion === true),
      );
      if (blocked) continue;
      const next = clone(obj);
      next.metadata.finalizers = (obj.metadata.finalizers ?? []).filter((f) => f !== 'foregroundDeletion');
      this.registry.systemUpdate(def, obj, next);
    }
  }

  private cleanUpNamespaces(): void {
    const namespaces = this.registry.resources.all().find(isNamespaceDef) as ResourceDef;
    for (const stored of this.registry.store.list(namespaces.storage)) {
      if (!stored.metadata.deletionTimestamp) continue;
      const contents = this.registry.resources
        .storages()
        .filter((def) => def.namespaced)
        .flatMap((def) => this.registry.store.list(def.storage, stored.metadata.name).map((obj) => ({ def, obj })));
      for (const { def, obj } of contents) {
        if (!obj.metadata.deletionTimestamp) this.registry.delete(def, obj.metadata.namespace, obj.metadata.name as string, { dryRun: false });
      }
      if (contents.length === 0) this.registry.finalizeNamespace(namespaces, stored);
    }
  }

  private cleanUpCrds(): void {
    const crds = this.registry.resources.all().find(isCrdDef) as ResourceDef;
    for (const crd of this.registry.store.list(crds.storage)) {
      if (!crd.metadata.deletionTimestamp || !crd.metadata.finalizers?.includes(CRD_CLEANUP_FINALIZER)) continue;
      const storage = `${getPath(crd, '.spec.group') as string}/${getPath(crd, '.spec.names.plural') as string}`;
      const def = this.registry.resources.storages().find((d) => d.storage === storage);
      const instances = def ? this.registry.store.list(storage) : [];
      for (const instance of instances) {
        if (!instance.metadata.deletionTimestamp) this.registry.delete(def as ResourceDef, instance.metadata.namespace, instance.metadata.name as string, { dryRun: false });
      }
      if (instances.length > 0) continue;
      const view = toView(crds, crd);
      const next = clone(view);
      next.metadata.finalizers = (view.metadata.finalizers ?? []).filter((f) => f !== CRD_CLEANUP_FINALIZER);
      this.registry.systemUpdate(crds, view, next);
    }
  }

  private establish(crds: ResourceDef, name: string): void {
    const crd = this.registry.find(crds, undefined, name);
    if (!crd) return;
    const now = timestamp();
    const condition = (type: string, reason: string, message: string) => ({ type, status: 'True', reason, message, lastTransitionTime: now });
    const versions = (getPath(crd, '.spec.versions') as { name: string; storage?: boolean }[] | undefined) ?? [];
    const status: JsonObject = {
      acceptedNames: (getPath(crd, '.spec.names') as Json | undefined) ?? {},
      conditions: [condition('NamesAccepted', 'NoConflicts', 'no conflicts found'), condition('Established', 'InitialNamesAccepted', 'the initial names have been accepted')],
      storedVersions: versions.filter((v) => v.storage).map((v) => v.name),
    };
    this.registry.systemUpdate(crds, crd, { ...crd, status }, 'status');
  }

  /** What the Deployment controller reports once every replica of the current generation is ready. */
  private reportAvailable(def: ResourceDef, namespace: string, name: string): void {
    const deployment = this.registry.find(def, namespace, name);
    if (!deployment || deployment.metadata.deletionTimestamp) return;
    const replicas = (getPath(deployment, '.spec.replicas') as number | undefined) ?? 1;
    const old = isObject(deployment.status) ? deployment.status : {};
    const oldConditions = Array.isArray(old.conditions) ? old.conditions.filter(isObject) : [];
    const now = timestamp();
    const condition = (type: string, reason: string, message: string): JsonObject => {
      const previous = oldConditions.find((c) => c.type === type && c.status === 'True' && c.reason === reason);
      const since = (field: string) => (previous?.[field] as string | undefined) ?? now;
      return { type, status: 'True', lastUpdateTime: since('lastUpdateTime'), lastTransitionTime: since('lastTransitionTime'), reason, message };
    };
    // Zero counts are omitted, as the API server serialises them (omitempty).
    const counts: JsonObject = replicas > 0 ? { replicas, updatedReplicas: replicas, readyReplicas: replicas, availableReplicas: replicas } : {};
    const status: JsonObject = {
      observedGeneration: deployment.metadata.generation ?? 1,
      ...counts,
      conditions: [
        condition('Available', 'MinimumReplicasAvailable', 'Deployment has minimum availability.'),
        condition('Progressing', 'NewReplicaSetAvailable', `ReplicaSet "${name}" has successfully progressed.`),
      ],
    };
    this.registry.systemUpdate(def, deployment, { ...deployment, status }, 'status');
  }
}
