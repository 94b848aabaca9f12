/**
 * kube-controller-manager's Deployment controller (v1.20, pkg/controller/deployment) on a cluster
 * with no kubelet: it makes ReplicaSets and the ReplicaSet controller makes their Pods, but no pod
 * is ever scheduled, so none becomes ready or available. What a Deployment reports then:
 *
 *   status: observedGeneration, replicas, updatedReplicas, unavailableReplicas (readyReplicas and
 *   availableReplicas absent: 0 is omitted); Available False MinimumReplicasUnavailable;
 *   Progressing True NewReplicaSetCreated, then ReplicaSetUpdated while it moves, then False
 *   ProgressDeadlineExceeded once spec.progressDeadlineSeconds pass without progress; the
 *   deployment.kubernetes.io/revision annotation (written through /status, as the controller does).
 *
 * The ReplicaSets are kept here (not served): rolling updates surge and clean up unhealthy old
 * replicas as the controller does, scaling mid-rollout is proportional, Recreate scales the old
 * ones down first. Their pods "exist" (status.replicas) one step after their spec changes, as
 * the ReplicaSet controller's status update follows. Not modelled: paused Deployments,
 * minReadySeconds, rollbacks' revision bookkeeping beyond taking the highest revision,
 * ReplicaFailure conditions, revisionHistoryLimit cleanup.
 */
import type { Scheduler } from './controllers.js';
import { parseGoTime, RFC3339 } from './gotime.js';
import { getPath, isObject, timestamp, type Json, type JsonObject, type KubeObject } from './json.js';
import type { Registry } from './registry.js';
import type { ResourceDef } from './resources.js';

const REVISION = 'deployment.kubernetes.io/revision';
const MAX_INT32 = 2 ** 31 - 1;

interface ReplicaSet {
  name: string;
  hash: string;
  revision: number;
  /** spec.replicas */
  replicas: number;
  /** status.replicas: pods that exist. */
  actual: number;
  /** deployment.kubernetes.io/desired-replicas and max-replicas annotations. */
  desired?: number;
  max?: number;
  created: number;
}

interface Condition extends JsonObject {
  type: string;
  status: string;
  lastUpdateTime: string;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

type Status = JsonObject & { conditions?: Condition[] };

/** rand.SafeEncodeString(fmt.Sprint(fnv32a(template))): the pod-template-hash's form. */
function templateHash(template: Json | undefined): string {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(JSON.stringify(template ?? null))) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  const alphabet = 'bcdfghjklmnpqrstvwxz2456789';
  return [...String(hash)].map((c) => alphabet[c.charCodeAt(0) % alphabet.length]).join('');
}

/** intstr.GetScaledValueFromIntOrPercent. */
function scaled(value: Json | undefined, total: number, roundUp: boolean): number {
  if (typeof value === 'number') return value;
  const percent = typeof value === 'string' && /^\d+%$/.test(value) ? Number(value.slice(0, -1)) : 0;
  const exact = (percent * total) / 100;
  return roundUp ? Math.ceil(exact) : Math.floor(exact);
}

export class DeploymentController {
  private readonly sets = new Map<string, ReplicaSet[]>();
  private readonly deadlines = new Map<string, NodeJS.Timeout>();
  private created = 0;

  constructor(
    private readonly registry: Registry,
    private readonly def: ResourceDef,
    private readonly scheduler: Scheduler,
    /** How long after a change the controller (and the ReplicaSet controller after it) acts. */
    private readonly delayMs: number,
  ) {}

  /** A Deployment changed (or its progress deadline is due): sync it shortly. */
  enqueue(namespace: string, name: string): void {
    this.scheduler.schedule(`deployment/${namespace}/${name}`, this.delayMs, () => this.sync(namespace, name));
  }

  stop(): void {
    for (const timer of this.deadlines.values()) clearTimeout(timer);
    this.deadlines.clear();
  }

  private replicas(d: KubeObject): number {
    return (getPath(d, '.spec.replicas') as number | undefined) ?? 1;
  }

  private rolling(d: KubeObject): boolean {
    return (getPath(d, '.spec.strategy.type') ?? 'RollingUpdate') === 'RollingUpdate';
  }

  /** ResolveFenceposts: maxSurge rounds up, maxUnavailable down; both 0 makes maxUnavailable 1. */
  private fenceposts(d: KubeObject): [number, number] {
    const n = this.replicas(d);
    let surge = scaled(getPath(d, '.spec.strategy.rollingUpdate.maxSurge') as Json | undefined, n, true);
    let unavailable = scaled(getPath(d, '.spec.strategy.rollingUpdate.maxUnavailable') as Json | undefined, n, false);
    if (surge === 0 && unavailable === 0) unavailable = 1;
    surge = Math.max(surge, 0);
    return [surge, unavailable];
  }

  private maxSurge(d: KubeObject): number {
    return this.rolling(d) ? this.fenceposts(d)[0] : 0;
  }

  private maxUnavailable(d: KubeObject): number {
    const n = this.replicas(d);
    if (!this.rolling(d) || n === 0) return 0;
    return Math.min(this.fenceposts(d)[1], n);
  }

  private progressDeadline(d: KubeObject): number | undefined {
    const seconds = getPath(d, '.spec.progressDeadlineSeconds') as number | undefined;
    return seconds === undefined || seconds === MAX_INT32 ? undefined : seconds;
  }

  /** Removes what belonged to a Deployment that is gone. */
  forget(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    this.sets.delete(key);
    clearTimeout(this.deadlines.get(key));
    this.deadlines.delete(key);
  }

  /** One pass of syncDeployment. */
  sync(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    let d = this.registry.find(this.def, namespace, name);
    if (!d || d.metadata.deletionTimestamp) {
      this.forget(namespace, name);
      return;
    }
    const sets = this.sets.get(key) ?? [];
    this.sets.set(key, sets);
    // The ReplicaSet controller has made (or removed) the pods of every ReplicaSet since the last pass.
    let podsPending = false;
    const hash = templateHash(getPath(d, '.spec.template') as Json | undefined);
    const n = this.replicas(d);
    const active = sets.filter((rs) => rs.replicas > 0);
    if (active.some((rs) => rs.desired !== undefined && rs.desired !== n)) {
      // A scaling event: resize the ReplicaSets (proportionally mid-rollout), report, nothing else.
      const newRS = sets.find((rs) => rs.hash === hash);
      d = this.syncRevision(d, newRS);
      podsPending = this.scale(d, newRS, sets.filter((rs) => rs !== newRS));
      this.writeStatus(d, this.calculateStatus(d, sets, newRS));
    } else {
      let newRS = sets.find((rs) => rs.hash === hash);
      const created = !newRS && (this.rolling(d) || sets.every((rs) => rs.actual === 0 && rs.replicas === 0));
      if (created) {
        newRS = { name: `${name}-${hash}`, hash, revision: 0, replicas: this.newReplicas(d, sets, undefined), actual: 0, desired: n, max: n + this.maxSurge(d), created: this.created++ };
        sets.push(newRS);
        podsPending = newRS.replicas > 0;
      }
      const otherRevisions = Math.max(0, ...sets.filter((rs) => rs !== newRS).map((rs) => rs.revision));
      if (newRS && newRS.revision <= otherRevisions) newRS.revision = otherRevisions + 1;
      d = this.syncRevision(d, newRS, created);
      const oldRSs = sets.filter((rs) => rs !== newRS);
      const scaledThisPass = this.rolling(d) ? this.rollingStep(d, newRS as ReplicaSet, oldRSs) : this.recreateStep(d, newRS, oldRSs);
      podsPending ||= scaledThisPass;
      this.syncRolloutStatus(d, sets, newRS);
    }
    if (podsPending || sets.some((rs) => rs.actual !== rs.replicas)) {
      // The pods follow their ReplicaSets a moment later (unscheduled ones go at once); the Deployment controller resyncs on that.
      this.scheduler.schedule(`replicaset/${key}`, this.delayMs, () => {
        for (const rs of this.sets.get(key) ?? []) rs.actual = rs.replicas;
        this.sync(namespace, name);
      });
    }
  }

  /** The Deployment's revision annotation follows its new ReplicaSet; a new one is announced in Progressing. */
  private syncRevision(d: KubeObject, newRS: ReplicaSet | undefined, created = false): KubeObject {
    if (!newRS) return d;
    const revision = String(newRS.revision);
    const annotations = d.metadata.annotations ?? {};
    const status: Status = { ...((isObject(d.status) ? d.status : {}) as Status) };
    let changed = annotations[REVISION] !== revision;
    if (this.progressDeadline(d) !== undefined) {
      const current = status.conditions?.find((c) => c.type === 'Progressing');
      if (created) {
        status.conditions = setCondition(status.conditions, condition('Progressing', 'True', 'NewReplicaSetCreated', `Created new replica set "${newRS.name}"`));
        changed = true;
      } else if (!current) {
        status.conditions = setCondition(status.conditions, condition('Progressing', 'True', 'FoundNewReplicaSet', `Found new replica set "${newRS.name}"`));
        changed = true;
      }
    }
    if (!changed) return d;
    const next: KubeObject = { ...d, metadata: { ...d.metadata, annotations: { ...annotations, [REVISION]: revision } }, status };
    return this.registry.systemUpdate(this.def, d, next, 'status');
  }

  /** NewRSNewReplicas. */
  private newReplicas(d: KubeObject, sets: ReplicaSet[], newRS: ReplicaSet | undefined): number {
    const n = this.replicas(d);
    if (!this.rolling(d)) return n;
    const current = sets.reduce((sum, rs) => sum + rs.replicas, 0);
    const maxTotal = n + this.maxSurge(d);
    const mine = newRS?.replicas ?? 0;
    if (current >= maxTotal) return mine;
    return mine + Math.max(0, Math.min(maxTotal - current, n - mine));
  }

  private scaleTo(d: KubeObject, rs: ReplicaSet, replicas: number): boolean {
    const n = this.replicas(d);
    const changed = rs.replicas !== replicas;
    rs.replicas = replicas;
    rs.desired = n;
    rs.max = n + this.maxSurge(d);
    return changed;
  }

  /** rolloutRolling's scaling: the new ReplicaSet up, then unhealthy old replicas down. */
  private rollingStep(d: KubeObject, newRS: ReplicaSet, oldRSs: ReplicaSet[]): boolean {
    const n = this.replicas(d);
    if (newRS.replicas !== n) {
      const target = newRS.replicas > n ? n : this.newReplicas(d, [newRS, ...oldRSs], newRS);
      if (this.scaleTo(d, newRS, target)) return true;
    }
    if (oldRSs.every((rs) => rs.replicas === 0)) return false;
    const all = newRS.replicas + oldRSs.reduce((sum, rs) => sum + rs.replicas, 0);
    const maxScaledDown = all - (n - this.maxUnavailable(d)) - newRS.replicas;
    if (maxScaledDown <= 0) return false;
    // cleanupUnhealthyReplicas: no pod is ever available, so every old replica is unhealthy.
    let total = 0;
    let scaledDown = false;
    for (const rs of [...oldRSs].sort((a, b) => a.created - b.created)) {
      if (total >= maxScaledDown) break;
      if (rs.replicas === 0) continue;
      const down = Math.min(maxScaledDown - total, rs.replicas);
      scaledDown = this.scaleTo(d, rs, rs.replicas - down) || scaledDown;
      total += down;
    }
    return scaledDown;
  }

  /** rolloutRecreate: old ReplicaSets to 0, wait for their pods to go, then the new one to full size. */
  private recreateStep(d: KubeObject, newRS: ReplicaSet | undefined, oldRSs: ReplicaSet[]): boolean {
    let scaledDown = false;
    for (const rs of oldRSs) if (rs.replicas > 0) scaledDown = this.scaleTo(d, rs, 0) || scaledDown;
    if (scaledDown || oldRSs.some((rs) => rs.actual > 0) || !newRS) return scaledDown;
    return this.scaleTo(d, newRS, this.replicas(d));
  }

  /** The Deployment controller's scale(): one active ReplicaSet takes the new size; several share it in proportion. */
  private scale(d: KubeObject, newRS: ReplicaSet | undefined, oldRSs: ReplicaSet[]): boolean {
    const n = this.replicas(d);
    const allRSs = [...(newRS ? [newRS] : []), ...oldRSs];
    const active = allRSs.filter((rs) => rs.replicas > 0);
    if (active.length <= 1) {
      const target = active[0] ?? newRS ?? [...oldRSs].sort((a, b) => b.created - a.created)[0];
      return target ? this.scaleTo(d, target, n) : false;
    }
    if (!this.rolling(d)) return false;
    const current = active.reduce((sum, rs) => sum + rs.replicas, 0);
    const allowed = n > 0 ? n + this.maxSurge(d) : 0;
    const toAdd = allowed - current;
    const bySize = [...active].sort((a, b) => b.replicas - a.replicas || (toAdd > 0 ? b.created - a.created : a.created - b.created));
    let added = 0;
    const sizes = new Map<ReplicaSet, number>();
    for (const rs of bySize) {
      let proportion = 0;
      if (toAdd !== 0 && rs.replicas !== 0 && toAdd !== added) {
        const fraction = n === 0 ? -rs.replicas : Math.round((rs.replicas * (n + this.maxSurge(d))) / (rs.max ?? current)) - rs.replicas;
        const remaining = toAdd - added;
        proportion = toAdd > 0 ? Math.min(fraction, remaining) : Math.max(fraction, remaining);
      }
      sizes.set(rs, rs.replicas + proportion);
      added += proportion;
    }
    let changed = false;
    bySize.forEach((rs, i) => {
      let size = sizes.get(rs) as number;
      if (i === 0 && toAdd !== 0) size = Math.max(0, size + toAdd - added);
      changed = this.scaleTo(d, rs, size) || changed;
    });
    return changed;
  }

  /** calculateStatus: counts from the ReplicaSets (no pod available), Available from maxUnavailable. */
  private calculateStatus(d: KubeObject, sets: ReplicaSet[], newRS: ReplicaSet | undefined): Status {
    const old = (isObject(d.status) ? d.status : {}) as Status;
    const total = sets.reduce((sum, rs) => sum + rs.replicas, 0);
    const counts: JsonObject = {
      observedGeneration: d.metadata.generation ?? 1,
      replicas: sets.reduce((sum, rs) => sum + rs.actual, 0),
      updatedReplicas: newRS?.actual ?? 0,
      unavailableReplicas: total,
    };
    // Zero counts are omitted, as the API server serialises them.
    const status: Status = Object.fromEntries(Object.entries(counts).filter(([, v]) => v !== 0));
    status.conditions = [...(old.conditions ?? [])];
    const available = 0 >= this.replicas(d) - this.maxUnavailable(d);
    status.conditions = setCondition(
      status.conditions,
      available ? condition('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.') : condition('Available', 'False', 'MinimumReplicasUnavailable', 'Deployment does not have minimum availability.'),
    );
    return status;
  }

  private writeStatus(d: KubeObject, status: Status): void {
    const { conditions, ...rest } = status;
    const old = (isObject(d.status) ? d.status : {}) as Status;
    const next: KubeObject = { ...d, status: { ...rest, ...(conditions && conditions.length ? { conditions } : {}), ...(old.collisionCount !== undefined ? { collisionCount: old.collisionCount } : {}) } };
    this.registry.systemUpdate(this.def, d, next, 'status');
  }

  /** syncRolloutStatus: the counts, then Progressing: complete, progressing, or timed out. */
  private syncRolloutStatus(d: KubeObject, sets: ReplicaSet[], newRS: ReplicaSet | undefined): void {
    const status = this.calculateStatus(d, sets, newRS);
    const deadline = this.progressDeadline(d);
    const n = this.replicas(d);
    if (deadline === undefined) status.conditions = (status.conditions ?? []).filter((c) => c.type !== 'Progressing');
    const old = (isObject(d.status) ? d.status : {}) as Status;
    const current = old.conditions?.find((c) => c.type === 'Progressing');
    const num = (s: Status, field: string) => (s[field] as number | undefined) ?? 0;
    const complete = num(status, 'replicas') === num(status, 'updatedReplicas') && current?.reason === 'NewReplicaSetAvailable';
    if (deadline !== undefined && !complete) {
      const progress = num(status, 'updatedReplicas') > num(old, 'updatedReplicas') || num(status, 'replicas') - num(status, 'updatedReplicas') < num(old, 'replicas') - num(old, 'updatedReplicas');
      const which = newRS ? `ReplicaSet "${newRS.name}"` : `Deployment "${d.metadata.name as string}"`;
      if (num(status, 'updatedReplicas') === n && num(status, 'replicas') === n && n === 0) {
        status.conditions = setCondition(status.conditions, condition('Progressing', 'True', 'NewReplicaSetAvailable', `${which} has successfully progressed.`));
      } else if (progress) {
        const next = condition('Progressing', 'True', 'ReplicaSetUpdated', `${which} is progressing.`);
        if (current?.status === 'True') next.lastTransitionTime = current.lastTransitionTime;
        status.conditions = setCondition((status.conditions ?? []).filter((c) => c.type !== 'Progressing'), next);
      } else if (this.timedOut(status, deadline)) {
        status.conditions = setCondition(status.conditions, condition('Progressing', 'False', 'ProgressDeadlineExceeded', `${which} has timed out progressing.`));
      }
    }
    this.writeStatus(d, status);
    this.requeueStuck(d, status, deadline);
  }

  private timedOut(status: Status, deadline: number): boolean {
    const progressing = status.conditions?.find((c) => c.type === 'Progressing');
    if (!progressing || progressing.reason === 'NewReplicaSetAvailable') return false;
    if (progressing.reason === 'ProgressDeadlineExceeded') return true;
    const from = parseGoTime(RFC3339, progressing.lastUpdateTime).time?.seconds ?? 0;
    return (from + deadline) * 1000 < Date.now();
  }

  /** requeueStuckDeployment: look again once the deadline has passed. */
  private requeueStuck(d: KubeObject, status: Status, deadline: number | undefined): void {
    const key = `${d.metadata.namespace as string}/${d.metadata.name as string}`;
    clearTimeout(this.deadlines.get(key));
    this.deadlines.delete(key);
    const progressing = status.conditions?.find((c) => c.type === 'Progressing');
    if (deadline === undefined || !progressing || progressing.reason === 'ProgressDeadlineExceeded' || progressing.reason === 'NewReplicaSetAvailable') return;
    const from = parseGoTime(RFC3339, progressing.lastUpdateTime).time?.seconds ?? 0;
    const after = Math.max(0, (from + deadline) * 1000 - Date.now());
    const timer = setTimeout(() => {
      this.deadlines.delete(key);
      this.enqueue(d.metadata.namespace as string, d.metadata.name as string);
    }, after + 1000);
    timer.unref();
    this.deadlines.set(key, timer);
  }
}

function condition(type: string, status: string, reason: string, message: string): Condition {
  const now = timestamp();
  return { type, status, lastUpdateTime: now, lastTransitionTime: now, reason, message };
}

/** SetDeploymentCondition: same status and reason keeps the old one; same status keeps lastTransitionTime; the new one goes last. */
function setCondition(conditions: Condition[] | undefined, next: Condition): Condition[] {
  const list = conditions ?? [];
  const current = list.find((c) => c.type === next.type);
  if (current && current.status === next.status && current.reason === next.reason) return list;
  if (current && current.status === next.status) next.lastTransitionTime = current.lastTransitionTime;
  return [...list.filter((c) => c.type !== next.type), next];
}
