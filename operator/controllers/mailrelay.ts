/**
 * The MailRelay controller: renders the relay's objects (operator/render) from the spec, the
 * SenderDomains it selects and the Secrets it names, applies them by server-side apply, and
 * reports Ready / Progressing / Degraded from the Deployment. A reference that does not
 * resolve yet (a Secret, a SenderDomain's keys) makes it Degraded and applies nothing; it
 * looks again soon, so the relay converges when the Secret appears.
 *
 * Quiet when nothing changes: an object is applied only when what it renders to changed, or
 * when someone else changed it since the operator applied it (its generation or version moved).
 */
import crypto from 'node:crypto';
import type { Logger } from 'pino';
import { mailRelaySpecSchema, type MailRelay, type SenderDomain } from '../api/v1alpha1.js';
import { KubeError, type AnyObject, type KubeClient } from '../kube/client.js';
import { matches } from '../kube/selector.js';
import type { ReconcileResult } from '../kube/workqueue.js';
import { handoffSecretName, relayEndpoint, relayLabels, relaySelector, renderMailRelay, type KubeObject } from '../render/mailrelay.js';
import { setCondition, statusChanged } from './conditions.js';
import type { EventSink } from './events.js';
import type { OperatorMetrics } from '../metrics.js';

export interface MailRelayContext {
  client: KubeClient;
  events: EventSink;
  log: Logger;
  now: () => Date;
  senderDomains: () => SenderDomain[];
  /** The relay's Deployment as the Deployment informer has it. */
  deployment: (namespace: string, name: string) => AnyObject | undefined;
  /** A Secret the operator made (the DKIM keys), from its informer; others are asked for. */
  managedSecret: (namespace: string, name: string) => AnyObject | undefined;
  serviceMonitors: () => boolean;
  defaultImage: string;
  /** While a reference is missing, look again this often (the Secrets users make are not watched). */
  missingRetryMs: number;
  metrics?: OperatorMetrics;
}

type Status = NonNullable<MailRelay['status']>;

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
    const referenced = [handoffSecretName(relay), relay.spec.tlsSecretName, relay.spec.usersSecretName, relay.spec.delivery.smarthost?.credentialsSecretName, ...senderDomains.map((d) => d.status?.secretName)].filter((n): n is string => !!n);
    const existing = new Set<string>();
    for (const name of new Set(referenced)) {
      if (this.ctx.managedSecret(namespace, name) || (await this.ctx.client.get({ apiVersion: 'v1', kind: 'Secret', namespace, name }))) existing.add(name);
    }

    const result = renderMailRelay(relay, { senderDomains, secretExists: (n) => existing.has(n), defaultImage: this.ctx.defaultImage, serviceMonitors: this.ctx.serviceMonitors() });
    if (!result.ok) {
      await this.degraded(relay, result.reason, result.message, now);
      return result.reason === 'Missing' ? { requeueAfterMs: this.ctx.missingRetryMs } : undefined;
    }

    for (const object of result.objects) await this.applyIfChanged(object);

    const deployment = this.ctx.deployment(namespace, relay.metadata.name);
    const dstatus = (deployment?.status ?? {}) as { replicas?: number; readyReplicas?: number; updatedReplicas?: number; observedGeneration?: number };
    const dspec = (deployment?.spec ?? {}) as { replicas?: number };
    const desired = dspec.replicas ?? relay.spec.replicas;
    const rolledOut = deployment !== undefined && (dstatus.observedGeneration ?? 0) >= (deployment.metadata.generation ?? 0) && (dstatus.updatedReplicas ?? 0) >= desired && (dstatus.replicas ?? 0) === desired;
    const readyReplicas = dstatus.readyReplicas ?? 0;
    const ready = readyReplicas >= Math.min(1, desired) && rolledOut && readyReplicas >= desired;
    let conditions = setCondition(relay.status?.conditions, { type: 'Degraded', status: 'False', reason: 'Reconciled', message: 'every reference resolved; objects applied', observedGeneration: generation }, now);
    conditions = setCondition(conditions, { type: 'Progressing', status: rolledOut ? 'False' : 'True', reason: rolledOut ? 'RolledOut' : 'RollingOut', message: rolledOut ? `${desired} replica(s) at the current version` : `rolling out: ${dstatus.updatedReplicas ?? 0} of ${desired} updated`, observedGeneration: generation }, now);
    conditions = setCondition(conditions, { type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? 'Available' : 'NotAvailable', message: `${readyReplicas} of ${desired} relay pod(s) ready`, observedGeneration: generation }, now);
    this.ctx.metrics?.mailRelayReplicas.set({ namespace, name: relay.metadata.name, state: 'desired' }, desired);
    this.ctx.metrics?.mailRelayReplicas.set({ namespace, name: relay.metadata.name, state: 'ready' }, readyReplicas);
    const wasReady = relay.status?.conditions?.find((c) => c.type === 'Ready')?.status;
    if (wasReady !== (ready ? 'True' : 'False') && ready) this.ctx.events.emit(relay as never, 'Normal', 'Ready', `${readyReplicas} relay pod(s) ready at ${relayEndpoint(relay)}`);
    await this.writeStatus(relay, {
      ...relay.status,
      observedGeneration: generation,
      conditions,
      replicas: dstatus.replicas ?? 0,
      readyReplicas,
      selector: relaySelector(relay),
      endpoint: relayEndpoint(relay),
    });
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

  /** Server-side apply, skipped when the rendered object and the live one are as last applied. */
  private async applyIfChanged(object: KubeObject): Promise<void> {
    const key = `${object.apiVersion}/${object.kind}/${object.metadata.namespace}/${object.metadata.name}`;
    const hash = crypto.createHash('sha256').update(JSON.stringify(object)).digest('hex');
    const last = this.applied.get(key);
    // Deployments: the informer shows whether anyone changed the spec since (its generation).
    // Deployments: a deleted one, or one someone edited (its generation moved), is applied again.
    if (object.kind === 'Deployment') {
      const live = this.ctx.deployment(object.metadata.namespace ?? 'default', object.metadata.name);
      if (last && last.hash === hash && live && String(live.metadata.generation ?? '') === last.version) return;
    } else if (last && last.hash === hash) return;
    const result = await this.ctx.client.apply<AnyObject>(object);
    this.applied.set(key, { hash, version: String(result.metadata.generation ?? '') });
  }

  private async degraded(relay: MailRelay, reason: string, message: string, now: Date): Promise<void> {
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
