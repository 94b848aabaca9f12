/**
 * The MailRelay controller: renders the relay's objects (operator/render) from the spec, the
 * SenderDomains it selects and the Secrets it names, applies them by server-side apply, and
 * reports Ready / Progressing / Degraded from the Deployment's availability (../policy/rollout.ts). A
 * reference that does not resolve yet (a Secret, a SenderDomain's keys) makes it Degraded and
 * applies nothing; it looks again soon, so the relay converges when the Secret appears.
 *
 * One object that cannot be applied does not hold back the others: each failure is named in
 * the Degraded condition (kind, name, request and the API server's words) and in an Event, and
 * the reconcile is retried with backoff. An object whose API the cluster does not serve
 * (./../kube/discovery.ts) is left out and reported the same way.
 *
 * Quiet when nothing changes: an object is applied only when what it renders to changed, or
 * when the live object (from the operator's watch on its own objects) is gone or was changed
 * by someone else since the operator applied it.
 */
import crypto from 'node:crypto';
import type { Logger } from 'pino';
import { API_VERSION, mailRelaySpecSchema, type MailRelay, type SenderDomain } from '../api/v1alpha1.js';
import { KubeError, type AnyObject, type KubeClient } from '../kube/client.js';
import { partitionServed } from '../kube/discovery.js';
import { matches } from '../kube/selector.js';
import type { ReconcileResult } from '../kube/workqueue.js';
import { LINKS_KEY_SECRET, linksOn, staleLinksObjects } from '../render/links.js';
import { BOUNCES_KEY_SECRET, handoffSecretName, needsBouncesKey, relayEndpoint, relayLabels, relaySecrets, relaySelector, renderMailRelay, type KubeObject } from '../render/mailrelay.js';
import { setCondition, statusChanged } from './conditions.js';
import type { EventSink } from './events.js';
import { relayRollout, type ConditionValue } from '../policy/rollout.js';
import type { OperatorMetrics } from '../metrics.js';
import type { Reason } from './reasons.js';
import { madeByOperator, namespaceWide, owned, relevant, self, type Watch } from './watches.js';

export interface MailRelayContext {
  client: KubeClient;
  events: EventSink;
  log: Logger;
  now: () => Date;
  senderDomains: () => SenderDomain[];
  /** The relay's Deployment as the Deployment informer has it. */
  deployment: (namespace: string, name: string) => AnyObject | undefined;
  /** A Secret from the operator's informer: its own whole, others with their key names only (withoutForeignValues); one not there is asked for. */
  managedSecret: (namespace: string, name: string) => AnyObject | undefined;
  /**
   * The operator's watch cache of its own objects of a kind, or undefined when it does not
   * watch that kind (its API is not served): a deleted or edited object is applied again.
   */
  owned: (apiVersion: string, kind: string) => ((namespace: string, name: string) => AnyObject | undefined) | undefined;
  /** Whether the cluster serves an API (discovery); objects of other APIs are left out and reported. */
  serves: (apiVersion: string) => boolean;
  /** An apply was answered 404 for its whole API: discovery should look again. */
  apiGone?: () => void;
  defaultImage: string;
  /** While a reference is missing, look again this often (the Secrets users make are watched too; this is the safety net). */
  missingRetryMs: number;
  metrics?: OperatorMetrics;
}

type Status = NonNullable<MailRelay['status']>;

/**
 * What says whether someone changed an object since the operator applied it: the generation
 * for kinds whose status others write (the Deployment and disruption controllers, an Ingress
 * controller), the resourceVersion for the rest.
 */
const BY_GENERATION = new Set(['Deployment', 'PodDisruptionBudget', 'Ingress']);
const liveVersion = (o: AnyObject) => (BY_GENERATION.has(o.kind) ? `generation ${o.metadata.generation ?? ''}` : `version ${o.metadata.resourceVersion ?? ''}`);

/** Where an API's absence has a known reason and remedy. */
const NOT_SERVED_HINT: Record<string, string> = {
  'policy/v1': 'Kubernetes 1.21 and later serve it; the relay pods run without a disruption budget',
  'monitoring.coreos.com/v1': 'install the Prometheus Operator CRDs',
  'networking.k8s.io/v1': 'Kubernetes 1.19 and later serve it; route the unsubscribe URLs to the Service NAME-links yourself',
};

export function notServedMessage(objects: readonly { apiVersion: string; kind: string; metadata: { name: string } }[]): string {
  return objects.map((o) => `${o.kind} ${o.metadata.name} not made: the cluster does not serve ${o.apiVersion}${NOT_SERVED_HINT[o.apiVersion] ? ` (${NOT_SERVED_HINT[o.apiVersion]})` : ''}`).join('; ');
}

/** A Secret's key names, sorted: what a relay renders of a webhook's Secret. */
const secretKeyNames = (o: AnyObject | undefined) => (o ? JSON.stringify(Object.keys((o.data ?? {}) as Record<string, unknown>).sort()) : undefined);

/** The Secrets the operator makes once per namespace, shared by its MailRelays. */
const NAMESPACE_KEYS = new Set([BOUNCES_KEY_SECRET, LINKS_KEY_SECRET]);

/**
 * What requeues a MailRelay: itself; the objects made for it (a pod ready, an object edited or
 * deleted, the handoff Secret gone); the namespace's return path or links key made or gone; in
 * its namespace, a SenderDomain's labels, spec or keys, which it renders into its config (not
 * the domain's conditions or DNS checks); and a Secret the user makes appearing, going, or
 * gaining or losing a key (a webhook's signing key ids are its Secret's keys), not a value
 * changing (the pods read the mounted files again).
 */
export const mailRelayWatches: readonly Watch[] = [
  self(API_VERSION, 'MailRelay'),
  namespaceWide(API_VERSION, 'SenderDomain', (o, previous) => relevant(o, ['keys', 'secretName']) !== relevant(previous, ['keys', 'secretName'])),
  // Every MailRelay of the namespace (which of them names the Secret, through a SenderDomain
  // too, is the reconcile's to find out): key names change seldom, and a reconcile that
  // renders the same objects applies nothing.
  namespaceWide('v1', 'Secret', (o, previous) => !madeByOperator((o ?? previous)!) && secretKeyNames(o) !== secretKeyNames(previous)),
  // The namespace's return path and links keys have no owner (each is every relay's): one going
  // (made again at once) or appearing brings every MailRelay of the namespace round.
  namespaceWide('v1', 'Secret', (o, previous) => NAMESPACE_KEYS.has((o ?? previous)!.metadata.name) && madeByOperator((o ?? previous)!) && !o !== !previous),
  ...(
    [
      ['apps/v1', 'Deployment'],
      ['v1', 'ConfigMap'],
      ['v1', 'Service'],
      ['v1', 'Secret'],
      ['policy/v1', 'PodDisruptionBudget'],
      ['monitoring.coreos.com/v1', 'ServiceMonitor'],
      ['networking.k8s.io/v1', 'Ingress'],
    ] as const
  ).map(([apiVersion, kind]) => owned(apiVersion, kind, 'MailRelay')),
];

export class MailRelayController {
  /** What was last applied per object: its rendered hash and the version the API returned. */
  private readonly applied = new Map<string, { hash: string; version: string }>();

  constructor(private readonly ctx: MailRelayContext) {}

  async reconcile(raw: MailRelay): Promise<ReconcileResult> {
    const now = this.ctx.now();
    const namespace = raw.metadata.namespace ?? 'default';
    const generation = raw.metadata.generation;
    const parsed = mailRelaySpecSchema.safeParse(raw.spec);
    if (!parsed.success) {
      const message = parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`).join('; ');
      await this.degraded(raw, 'InvalidSpec', message, now);
      return;
    }
    const relay: MailRelay = { ...raw, spec: parsed.data };
    await this.ensureHandoffSecret(relay);
    const senderDomains = this.ctx.senderDomains().filter((d) => (d.metadata.namespace ?? 'default') === namespace && matches(relay.spec.senderDomainSelector, d.metadata.labels));
    if (needsBouncesKey(relay, senderDomains)) await this.ensureNamespaceKey(relay, BOUNCES_KEY_SECRET);
    if (linksOn(relay, senderDomains)) await this.ensureNamespaceKey(relay, LINKS_KEY_SECRET);
    // Each Secret's key names, never its values: the webhooks' key ids are their Secrets' keys.
    const existing = new Map<string, string[]>();
    for (const name of new Set(relaySecrets(relay, senderDomains).map((s) => s.name))) {
      const secret = this.ctx.managedSecret(namespace, name) ?? (await this.ctx.client.get({ apiVersion: 'v1', kind: 'Secret', namespace, name }));
      if (secret) existing.set(name, Object.keys((secret.data ?? {}) as Record<string, unknown>));
    }

    const result = renderMailRelay(relay, {
      senderDomains,
      secretExists: (n) => existing.has(n),
      secretKeys: (n) => existing.get(n) ?? [],
      defaultImage: this.ctx.defaultImage,
      serviceMonitors: this.ctx.serves('monitoring.coreos.com/v1'),
    });
    if (!result.ok) {
      await this.degraded(relay, result.reason, result.message, now);
      return result.reason === 'Missing' ? { requeueAfterMs: this.ctx.missingRetryMs } : undefined;
    }

    const { served, notServed } = partitionServed(result.objects, this.ctx.serves);
    const failures: string[] = [];
    for (const object of served) {
      try {
        await this.applyIfChanged(object);
      } catch (err) {
        // A 404 on an apply (which creates) means the API itself is gone: discovery looks again.
        if (err instanceof KubeError && err.code === 404) this.ctx.apiGone?.();
        failures.push(`${object.kind} ${object.metadata.name}: ${(err as Error).message}`);
      }
    }
    // The links' Service and Ingress it no longer renders (links or the Ingress turned off).
    for (const stale of staleLinksObjects(relay, result.objects, (ref) => this.ctx.owned(ref.apiVersion, ref.kind)?.(namespace, ref.name))) {
      try {
        await this.ctx.client.delete({ ...stale, namespace });
        this.applied.delete(`${stale.apiVersion}/${stale.kind}/${namespace}/${stale.name}`);
      } catch (err) {
        failures.push(`${stale.kind} ${stale.name} (no longer wanted, not deleted): ${(err as Error).message}`);
      }
    }

    const deployment = this.ctx.deployment(namespace, relay.metadata.name);
    const desired = ((deployment?.spec ?? {}) as { replicas?: number }).replicas ?? relay.spec.replicas;
    const rollout = relayRollout(deployment as never, desired, relaySelector(relay));
    const degraded: ConditionValue = failures.length
      ? { status: 'True' as const, reason: 'ApplyFailed', message: `could not apply ${failures.join('; ')}` }
      : rollout.stuck
        ? { status: 'True' as const, ...rollout.stuck }
        : notServed.length
          ? { status: 'True' as const, reason: 'APINotServed', message: notServedMessage(notServed) }
          : { status: 'False' as const, reason: 'Reconciled', message: 'every reference resolved; objects applied' };
    let conditions = setCondition(relay.status?.conditions, { type: 'Degraded', ...degraded, observedGeneration: generation }, now);
    conditions = setCondition(conditions, { type: 'Progressing', ...rollout.progressing, observedGeneration: generation }, now);
    conditions = setCondition(conditions, { type: 'Ready', ...rollout.ready, observedGeneration: generation }, now);
    this.ctx.metrics?.mailRelayReplicas.set({ namespace, name: relay.metadata.name, state: 'desired' }, desired);
    this.ctx.metrics?.mailRelayReplicas.set({ namespace, name: relay.metadata.name, state: 'ready' }, rollout.readyReplicas);
    const was = (type: string) => relay.status?.conditions?.find((c) => c.type === type);
    if (rollout.ready.status === 'True' && was('Ready')?.status !== 'True') this.ctx.events.emit(relay as never, 'Normal', 'Ready', `${rollout.readyReplicas} relay pod(s) ready at ${relayEndpoint(relay)}`);
    if (degraded.status === 'True' && (was('Degraded')?.status !== 'True' || was('Degraded')?.message !== degraded.message)) this.ctx.events.emit(relay as never, 'Warning', degraded.reason, degraded.message);
    await this.writeStatus(relay, {
      ...relay.status,
      observedGeneration: generation,
      conditions,
      replicas: rollout.replicas,
      readyReplicas: rollout.readyReplicas,
      selector: relaySelector(relay),
      endpoint: relayEndpoint(relay),
    });
    // The status says what failed; the error makes the work queue retry with backoff.
    if (failures.length) throw new Error(`could not apply ${failures.join('; ')}`);
    return undefined;
  }

  /**
   * The fleet's handoff token, made once (create, never apply: a token that changed under
   * running pods would make them refuse each other's mail).
   */
  private async ensureHandoffSecret(relay: MailRelay): Promise<void> {
    const namespace = relay.metadata.namespace ?? 'default';
    const name = handoffSecretName(relay);
    if (this.ctx.managedSecret(namespace, name) || (await this.ctx.client.get({ apiVersion: 'v1', kind: 'Secret', namespace, name }))) return;
    const owner = { apiVersion: relay.apiVersion, kind: relay.kind, name: relay.metadata.name, uid: relay.metadata.uid ?? '', controller: true, blockOwnerDeletion: true };
    try {
      await this.ctx.client.create({
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: { name, namespace, labels: relayLabels(relay), ownerReferences: [owner] },
        data: { token: Buffer.from(crypto.randomBytes(32).toString('hex')).toString('base64') },
      });
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 409)) throw err;
    }
  }

  /**
   * A key of the namespace, the return paths' (BOUNCES_KEY_SECRET) or the unsubscribe links'
   * (LINKS_KEY_SECRET: why one per namespace is said there), made once like the handoff token:
   * create, never apply; no owner, as it is every relay's of the namespace. 32 random bytes,
   * base64 (44 characters; the relay wants at least 32). Labelled with its own name.
   */
  private async ensureNamespaceKey(relay: MailRelay, name: string): Promise<void> {
    const namespace = relay.metadata.namespace ?? 'default';
    if (this.ctx.managedSecret(namespace, name) || (await this.ctx.client.get({ apiVersion: 'v1', kind: 'Secret', namespace, name }))) return;
    try {
      await this.ctx.client.create({
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: { name, namespace, labels: { 'app.kubernetes.io/name': name, 'app.kubernetes.io/managed-by': 'mailfleet-operator' } },
        data: { key: Buffer.from(crypto.randomBytes(32).toString('base64')).toString('base64') },
      });
    } catch (err) {
      if (!(err instanceof KubeError && err.code === 409)) throw err;
    }
  }

  /** Server-side apply, skipped when the rendered object and the live one are as last applied. */
  private async applyIfChanged(object: KubeObject): Promise<void> {
    const key = `${object.apiVersion}/${object.kind}/${object.metadata.namespace}/${object.metadata.name}`;
    const hash = crypto.createHash('sha256').update(JSON.stringify(object)).digest('hex');
    const last = this.applied.get(key);
    if (last && last.hash === hash) {
      const cache = this.ctx.owned(object.apiVersion, object.kind);
      if (!cache) return;
      const live = cache(object.metadata.namespace ?? 'default', object.metadata.name);
      if (live && liveVersion(live) === last.version) return;
    }
    const result = await this.ctx.client.apply<AnyObject>(object);
    this.applied.set(key, { hash, version: liveVersion(result) });
  }

  private async degraded(relay: MailRelay, reason: Reason, message: string, now: Date): Promise<void> {
    const generation = relay.metadata.generation;
    const was = relay.status?.conditions?.find((c) => c.type === 'Degraded');
    if (was?.status !== 'True' || was.message !== message) this.ctx.events.emit(relay as never, 'Warning', reason, message);
    let conditions = setCondition(relay.status?.conditions, { type: 'Degraded', status: 'True', reason, message, observedGeneration: generation }, now);
    conditions = setCondition(conditions, { type: 'Ready', status: 'False', reason, message, observedGeneration: generation }, now);
    await this.writeStatus(relay, { ...relay.status, observedGeneration: generation, conditions, selector: relaySelector(relay), endpoint: relayEndpoint(relay) });
  }

  /** Writes this controller's fields only: the autoscaler's (autoscaler, lastScale, queue) are its own, and a merge patch leaves them alone. */
  private async writeStatus(relay: MailRelay, status: Status): Promise<void> {
    if (!statusChanged(relay.status, status)) return;
    const { autoscaler: _autoscaler, lastScale: _lastScale, queue: _queue, queueSummary: _queueSummary, ...own } = status;
    await this.ctx.client.patchStatus({ apiVersion: relay.apiVersion, kind: relay.kind, namespace: relay.metadata.namespace, name: relay.metadata.name }, own);
  }
}
