/**
 * The SenderDomain controller: keeps the domain's DKIM keys (a Secret it owns; the key list
 * in the Secret's annotation is the source of truth, so a restart never makes a second key),
 * walks the rotation state machine, computes the DNS records, checks them against DNS every
 * verification interval, optionally publishes them as an external-dns DNSEndpoint, and
 * reports it all in status (KeysReady, DNSVerified, Ready, and Degraded when the DNSEndpoint
 * cannot be made) and Events.
 */
import type { Logger } from 'pino';
import { duration } from '../../relay/config.js';
import { dkimPublicKeyFromPem, generateDkimKey } from '../../relay/dkim-keys.js';
import type { DnsRecord } from '../../relay/records.js';
import type { RecordCheck } from '../../relay/records-verify.js';
import { API_VERSION, senderDomainSpecSchema, type DkimKeyStatus, type MailRelay, type SenderDomain } from '../api/v1alpha1.js';
import type { AnyObject, KubeClient } from '../kube/client.js';
import type { ReconcileResult } from '../kube/workqueue.js';
import { dkimSecret, dkimSecretName, dnsEndpoint, keysOfSecret, senderDomainRecords } from '../render/senderdomain.js';
import { setCondition, statusChanged } from './conditions.js';
import { planRotation } from './dkim-rotation.js';
import type { EventSink } from './events.js';
import type { OperatorMetrics } from '../metrics.js';
import type { Reason } from './reasons.js';
import { namespaceWide, owned, relevant, self, type Watch } from './watches.js';

export interface SenderDomainContext {
  client: KubeClient;
  events: EventSink;
  log: Logger;
  now: () => Date;
  /** MailRelays known to the operator (their facts shape SPF). */
  relays: () => MailRelay[];
  /** The DKIM Secret as the Secret informer has it. */
  secret: (namespace: string, name: string) => AnyObject | undefined;
  /** Whether the external-dns DNSEndpoint CRD exists in the cluster. */
  dnsEndpoints: () => boolean;
  verify: (records: DnsRecord[], servers: string[]) => Promise<RecordCheck[]>;
  metrics?: OperatorMetrics;
}

type Status = NonNullable<SenderDomain['status']>;

/**
 * What requeues a SenderDomain: itself; its key Secret and DNSEndpoint; and, in its namespace,
 * a MailRelay's labels or spec (its route and egress addresses shape the SPF record).
 */
export const senderDomainWatches: readonly Watch[] = [
  self(API_VERSION, 'SenderDomain'),
  namespaceWide(API_VERSION, 'MailRelay', (o, previous) => relevant(o, []) !== relevant(previous, [])),
  owned('v1', 'Secret', 'SenderDomain'),
  owned('externaldns.k8s.io/v1alpha1', 'DNSEndpoint', 'SenderDomain'),
];

export class SenderDomainController {
  /** When each domain (by uid) was last checked against DNS: status records it only on a change. */
  private readonly lastChecked = new Map<string, number>();

  constructor(private readonly ctx: SenderDomainContext) {}

  async reconcile(raw: SenderDomain): Promise<ReconcileResult> {
    const now = this.ctx.now();
    const namespace = raw.metadata.namespace ?? 'default';
    const parsed = senderDomainSpecSchema.safeParse(raw.spec);
    if (!parsed.success) {
      await this.writeStatus(raw, { ...raw.status, observedGeneration: raw.metadata.generation, conditions: setCondition(raw.status?.conditions, { type: 'Ready', status: 'False', reason: 'InvalidSpec', message: parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`).join('; '), observedGeneration: raw.metadata.generation }, now) });
      return;
    }
    const domain: SenderDomain = { ...raw, spec: parsed.data };
    const spec = domain.spec;

    // Keys: the Secret says which exist; the state machine says what happens next.
    const secretName = dkimSecretName(domain);
    const secret = this.ctx.secret(namespace, secretName) ?? (await this.ctx.client.get({ apiVersion: 'v1', kind: 'Secret', namespace, name: secretName }));
    const data = (secret?.data ?? {}) as Record<string, string>;
    const keys = keysOfSecret(secret as never);
    const pems = new Map<string, string>();
    for (const k of keys) pems.set(k.selector, Buffer.from(data[`${k.selector}.pem`]!, 'base64').toString('utf8'));
    const recordsOf = (list: readonly DkimKeyStatus[]) =>
      senderDomainRecords(
        domain,
        this.ctx.relays(),
        list.map((k) => ({ selector: k.selector, algorithm: k.algorithm, publicKey: dkimPublicKeyFromPem(pems.get(k.selector)!, `DKIM key ${k.selector} of ${spec.domain}`).publicKey })),
      );

    // What DNS serves for the current keys (checked every verification interval, or when the
    // records change): the rotation may switch signing only on what DNS was just seen to serve.
    const current = recordsOf(keys);
    const intervalMs = duration.parse(spec.verification.interval) * 1000;
    const last = Math.max(this.lastChecked.get(domain.metadata.uid ?? '') ?? 0, domain.status?.lastVerifiedAt ? Date.parse(domain.status.lastVerifiedAt) : 0);
    const sameRecords = JSON.stringify((domain.status?.records ?? []).map((r) => [r.name, r.value])) === JSON.stringify(current.records.map((r) => [r.name, r.value]));
    let checks: RecordCheck[] | undefined;
    if (!sameRecords || now.getTime() - last >= intervalMs) {
      checks = await this.ctx.verify(current.records, spec.verification.resolvers);
      this.lastChecked.set(domain.metadata.uid ?? '', now.getTime());
    }
    const dnsOf = (r: { name: string; value: string }) =>
      checks?.find((c) => c.record.name === r.name && c.record.value === r.value)?.status ?? domain.status?.records?.find((x) => x.name === r.name && x.value === r.value)?.dns;
    const servedSelector = new Map(current.records.filter((r) => r.selector).map((r) => [r.selector!, dnsOf(r)]));

    const plan = planRotation({ spec, keys, served: (selector) => servedSelector.get(selector) === 'match', now, propagationSeconds: spec.dnsEndpoint.ttl, usedSelectors: (domain.status?.keys ?? []).map((k) => k.selector) });
    for (const c of plan.create) pems.set(c.selector, generateDkimKey(c.algorithm).privateKeyPem);
    if (JSON.stringify(plan.keys) !== JSON.stringify(keys) || !secret) {
      const desired = dkimSecret(domain, plan.keys, pems);
      // `data`, not `stringData`: applied fields must read back as they were written.
      const { stringData, ...rest } = desired as typeof desired & { stringData: Record<string, string> };
      await this.ctx.client.apply({ ...rest, data: Object.fromEntries(Object.entries(stringData).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) } as never);
    }
    for (const e of plan.events) this.ctx.events.emit(domain as never, 'Normal', e.reason, e.message);
    const records = JSON.stringify(plan.keys) === JSON.stringify(keys) ? current : recordsOf(plan.keys);
    const previous = new Map((domain.status?.records ?? []).map((r) => [`${r.name}|${r.value}`, r]));
    const recordStatus = records.records.map((r) => {
      const check = checks?.find((c) => c.record.name === r.name && c.record.value === r.value);
      const before = previous.get(`${r.name}|${r.value}`);
      const dns = check ? check.status : (before?.dns ?? 'unknown');
      const difference = check ? (check.difference ?? check.error) : before?.difference;
      return { name: r.name, type: r.type, value: r.value, strings: r.strings, purpose: r.purpose, ...(r.selector ? { selector: r.selector } : {}), dns, ...(difference ? { difference } : {}) };
    });

    // The DNSEndpoint is optional: its failure is reported (Degraded), not a reason to stop here.
    let endpointProblem: { reason: Reason; message: string } | undefined;
    if (spec.dnsEndpoint.enabled && !this.ctx.dnsEndpoints()) {
      endpointProblem = { reason: 'APINotServed', message: `spec.dnsEndpoint.enabled, but the cluster does not serve externaldns.k8s.io/v1alpha1: install external-dns with its DNSEndpoint CRD, or publish status.records yourself` };
    } else if (spec.dnsEndpoint.enabled) {
      try {
        await this.ctx.client.apply(dnsEndpoint(domain, records) as never);
      } catch (err) {
        endpointProblem = { reason: 'ApplyFailed', message: `could not apply DNSEndpoint ${domain.metadata.name}-records: ${(err as Error).message}` };
      }
    }

    // Conditions.
    const generation = domain.metadata.generation;
    const wanted = spec.dkim.keyType === 'both' ? 2 : 1;
    const active = plan.keys.filter((k) => k.state === 'active');
    const keysReady = active.length >= wanted;
    const notMatching = recordStatus.filter((r) => r.dns !== 'match');
    const dnsMessage = notMatching.length
      ? `${notMatching.length} of ${recordStatus.length} records not served as recommended: ${notMatching.map((r) => `${r.name} ${r.purpose} ${r.dns}${r.difference ? ` (${r.difference})` : ''}`).join('; ')}`
      : `all ${recordStatus.length} records served`;
    const waiting = plan.waitingForDns.length ? `; ${plan.waitingForDns.join(', ')} wait for DNS before they sign` : '';
    let conditions = setCondition(domain.status?.conditions, { type: 'KeysReady', status: keysReady ? 'True' : 'False', reason: keysReady ? 'Signing' : 'Generating', message: `signing with ${active.map((k) => k.selector).join(', ') || 'no key yet'}${waiting}`, observedGeneration: generation }, now);
    conditions = setCondition(conditions, { type: 'DNSVerified', status: notMatching.length ? 'False' : 'True', reason: notMatching.length ? 'RecordsNotServed' : 'RecordsServed', message: dnsMessage, observedGeneration: generation }, now);
    const ready = keysReady && !notMatching.length;
    conditions = setCondition(conditions, { type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? 'Ready' : keysReady ? 'WaitingForDNS' : 'WaitingForKeys', message: ready ? `${spec.domain} signs and its records are served` : keysReady ? `publish the records in status.records (${dnsMessage})` : 'making keys', observedGeneration: generation }, now);
    conditions = setCondition(conditions, { type: 'Degraded', status: endpointProblem ? 'True' : 'False', reason: endpointProblem?.reason ?? 'Reconciled', message: endpointProblem?.message ?? 'keys, records and status up to date', observedGeneration: generation }, now);
    const degradedBefore = domain.status?.conditions?.find((c) => c.type === 'Degraded');
    if (endpointProblem && (degradedBefore?.status !== 'True' || degradedBefore.message !== endpointProblem.message)) this.ctx.events.emit(domain as never, 'Warning', endpointProblem.reason, endpointProblem.message);
    const dnsBefore = domain.status?.conditions?.find((c) => c.type === 'DNSVerified')?.status;
    const dnsAfter = conditions.find((c) => c.type === 'DNSVerified')!.status;
    if (checks && dnsBefore !== dnsAfter) this.ctx.events.emit(domain as never, dnsAfter === 'True' ? 'Normal' : 'Warning', dnsAfter === 'True' ? 'DNSVerified' : 'DNSNotVerified', dnsMessage);

    const status: Status = {
      observedGeneration: generation,
      conditions,
      secretName,
      activeSelectors: active.map((k) => k.selector).join(','),
      keys: plan.keys as DkimKeyStatus[],
      ...(plan.nextStepAt ? { nextRotationAt: plan.nextStepAt.toISOString() } : {}),
      records: recordStatus,
      lastVerifiedAt: checks ? now.toISOString() : domain.status?.lastVerifiedAt,
    };
    await this.writeStatus(domain, status);
    // The status says what failed; the error makes the work queue retry with backoff.
    if (endpointProblem?.reason === 'ApplyFailed') throw new Error(endpointProblem.message);
    const labels = { namespace, name: domain.metadata.name, domain: spec.domain };
    this.ctx.metrics?.senderDomainDnsVerified.set(labels, notMatching.length ? 0 : 1);
    const waitingSince = plan.keys.filter((k) => k.state === 'next').map((k) => Date.parse(k.createdAt));
    this.ctx.metrics?.senderDomainKeyWaitingSeconds.set(labels, waitingSince.length ? (now.getTime() - Math.min(...waitingSince)) / 1000 : 0);
    if (records.warnings.length && checks) this.ctx.log.info({ event: 'records_warnings', senderDomain: `${namespace}/${domain.metadata.name}`, warnings: records.warnings }, 'record warnings');

    // Come back for the next rotation step or DNS check, whichever is first.
    const nextCheck = (checks ? now.getTime() : last) + intervalMs;
    const nextStep = plan.nextStepAt?.getTime() ?? Infinity;
    return { requeueAfterMs: Math.max(1000, Math.min(nextCheck, nextStep) - now.getTime()) };
  }

  /** Status only when it changed (lastVerifiedAt alone is not a change worth a write). */
  private async writeStatus(domain: SenderDomain, status: Status): Promise<void> {
    if (!statusChanged(domain.status, status, ['lastVerifiedAt'])) return;
    await this.ctx.client.patchStatus({ apiVersion: domain.apiVersion, kind: domain.kind, namespace: domain.metadata.namespace, name: domain.metadata.name }, status);
  }
}
