/**
 * The SenderDomain controller: keeps the domain's DKIM keys (a Secret it owns; the key list
 * in the Secret's annotation is the source of truth, so a restart never makes a second key),
 * walks the rotation state machine, computes the DNS records, checks them against DNS every
 * verification interval, optionally publishes them as an external-dns DNSEndpoint, and
 * reports it all in status (KeysReady, DNSVerified, Ready, Degraded when the DNSEndpoint
 * cannot be made, and BulkSenderReady with the PTR look-ups of the selecting MailRelays'
 * egress addresses) and Events.
 *
 * One pass, as cert-manager's readiness controller: gather what exists (the Secret, DNS when a
 * check is due), let policy decide (../policy/dkim-rotation.ts for the keys,
 * ../policy/senderdomain-status.ts for the status), do the writes that asks for, and write
 * this controller's own status fields.
 */
import type { Logger } from 'pino';
import { dkimPublicKeyFromPem, generateDkimKey } from '../../relay/dkim-keys.js';
import type { DnsRecord, DomainRecords } from '../../relay/records.js';
import type { RecordCheck } from '../../relay/records-verify.js';
import { API_VERSION, senderDomainSpecSchema, type DkimKeyStatus, type MailRelay, type SenderDomain } from '../api/v1alpha1.js';
import type { AnyObject, KubeClient } from '../kube/client.js';
import type { ReconcileResult } from '../kube/workqueue.js';
import { egressToCheck, type BulkSenderRelay, type ReverseLookup } from '../policy/bulk-sender.js';
import { planRotation } from '../policy/dkim-rotation.js';
import { dnsCheckDue, invalidSpecStatus, lastCheckedAt, senderDomainStatus, servedSelectors, type SenderDomainStatus } from '../policy/senderdomain-status.js';
import { dkimSecret, dkimSecretName, dnsEndpoint, keysOfSecret, relaysSigningFor, senderDomainRecords } from '../render/senderdomain.js';
import { statusChanged } from './conditions.js';
import type { EventSink } from './events.js';
import type { OperatorMetrics } from '../metrics.js';
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
  /** The PTR and forward look-ups of FCrDNS (./reverse-dns.ts), asked of the same resolvers as `verify`. */
  reverse: (addresses: string[], servers: string[]) => Promise<ReverseLookup[]>;
  metrics?: OperatorMetrics;
}

/**
 * What requeues a SenderDomain: itself; its key Secret and DNSEndpoint; and, in its namespace,
 * a MailRelay's labels or spec (its route and egress addresses shape the SPF record, and
 * BulkSenderReady's FCrDNS and TLS checks).
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
  /** Each domain's (by uid) last reverse look-ups, with the addresses and resolvers they were for. */
  private readonly reverse = new Map<string, { for: string; lookups: ReverseLookup[] }>();

  constructor(private readonly ctx: SenderDomainContext) {}

  async reconcile(raw: SenderDomain): Promise<ReconcileResult> {
    const now = this.ctx.now();
    const parsed = senderDomainSpecSchema.safeParse(raw.spec);
    if (!parsed.success) {
      await this.writeStatus(raw, invalidSpecStatus(raw, parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`).join('; '), now));
      return;
    }
    const domain: SenderDomain = { ...raw, spec: parsed.data };
    const spec = domain.spec;
    const namespace = domain.metadata.namespace ?? 'default';

    // Gather: the keys the Secret holds, their records, and what DNS serves when a check is due.
    const found = await this.gather(domain, now);

    // The rotation step (policy), then the writes it asks for: new keys, the Secret, the DNSEndpoint.
    const plan = planRotation({ spec, keys: found.keys, served: servedSelectors(domain, found.records.records, found.checks), now, propagationSeconds: spec.dnsEndpoint.ttl, usedSelectors: (domain.status?.keys ?? []).map((k) => k.selector) });
    const keysChanged = JSON.stringify(plan.keys) !== JSON.stringify(found.keys);
    for (const c of plan.create) found.pems.set(c.selector, generateDkimKey(c.algorithm).privateKeyPem);
    if (keysChanged || !found.secret) await this.applySecret(domain, plan.keys, found.pems);
    for (const e of plan.events) this.ctx.events.emit(domain as never, 'Normal', e.reason, e.message);
    const records = keysChanged ? this.records(domain, plan.keys, found.pems) : found.records;
    const dnsEndpointServed = this.ctx.dnsEndpoints();
    const dnsEndpointError = spec.dnsEndpoint.enabled && dnsEndpointServed ? await this.applyEndpoint(domain, records) : undefined;

    // Status (policy), then this controller's own status fields.
    const verdict = senderDomainStatus(
      { domain, secretName: dkimSecretName(domain), keys: plan.keys, waitingForDns: plan.waitingForDns, nextStepAt: plan.nextStepAt, records: records.records, checks: found.checks, lastCheckedAt: found.lastCheckedAt, dnsEndpointServed, dnsEndpointError, warnings: records.warnings, bulkSender: await this.bulkSender(domain, found.checks !== undefined) },
      now,
    );
    for (const e of verdict.events) this.ctx.events.emit(domain as never, e.type, e.reason, e.message);
    await this.writeStatus(domain, verdict.status);
    // The status says what failed; the error makes the work queue retry with backoff.
    if (verdict.retry) throw new Error(verdict.retry);

    const labels = { namespace, name: domain.metadata.name, domain: spec.domain };
    this.ctx.metrics?.senderDomainDnsVerified.set(labels, verdict.status.records!.some((r) => r.dns !== 'match') ? 0 : 1);
    const waitingSince = plan.keys.filter((k) => k.state === 'next').map((k) => Date.parse(k.createdAt));
    this.ctx.metrics?.senderDomainKeyWaitingSeconds.set(labels, waitingSince.length ? (now.getTime() - Math.min(...waitingSince)) / 1000 : 0);
    if (records.warnings.length && found.checks) this.ctx.log.info({ event: 'records_warnings', senderDomain: `${namespace}/${domain.metadata.name}`, warnings: records.warnings }, 'record warnings');
    return { requeueAfterMs: verdict.requeueAfterMs };
  }

  /**
   * What exists: the key Secret (the informer's copy, else the API's) and the keys it holds,
   * their records, and, when a check is due (./../policy/senderdomain-status.ts), what DNS
   * serves for them: the rotation may switch signing only on what DNS was just seen to serve.
   */
  private async gather(domain: SenderDomain, now: Date) {
    const namespace = domain.metadata.namespace ?? 'default';
    const secretName = dkimSecretName(domain);
    const secret = this.ctx.secret(namespace, secretName) ?? (await this.ctx.client.get({ apiVersion: 'v1', kind: 'Secret', namespace, name: secretName }));
    const data = (secret?.data ?? {}) as Record<string, string>;
    const keys = keysOfSecret(secret as never);
    const pems = new Map<string, string>();
    for (const k of keys) pems.set(k.selector, Buffer.from(data[`${k.selector}.pem`]!, 'base64').toString('utf8'));
    const records = this.records(domain, keys, pems);
    const uid = domain.metadata.uid ?? '';
    let lastChecked = lastCheckedAt(domain, this.lastChecked.get(uid));
    let checks: RecordCheck[] | undefined;
    if (dnsCheckDue(domain, records.records, lastChecked, now)) {
      checks = await this.ctx.verify(records.records, domain.spec.verification.resolvers);
      lastChecked = now.getTime();
      this.lastChecked.set(uid, lastChecked);
    }
    return { secret, keys, pems, records, checks, lastCheckedAt: lastChecked };
  }

  /**
   * The MailRelays that select the domain, and the reverse DNS of their egress addresses:
   * looked up with the records' DNS check, and at once for addresses (or resolvers) not
   * looked up before (a MailRelay changed them, or the operator restarted).
   */
  private async bulkSender(domain: SenderDomain, dnsChecked: boolean): Promise<{ relays: BulkSenderRelay[]; reverse: ReverseLookup[] }> {
    const relays = relaysSigningFor(domain, this.ctx.relays()).map((r): BulkSenderRelay => {
      const d = r.spec.delivery as Partial<MailRelay['spec']['delivery']> | undefined;
      const route = d?.route ?? 'mx';
      return { name: r.metadata.name, route, ...(route === 'smarthost' && d?.smarthost ? { smarthost: { host: d.smarthost.host, tls: d.smarthost.tls ?? 'starttls' } } : {}), egressAddresses: d?.egressAddresses ?? [] };
    });
    const addresses = egressToCheck(relays);
    const resolvers = domain.spec.verification.resolvers;
    const uid = domain.metadata.uid ?? '';
    const key = JSON.stringify([addresses, resolvers]);
    const remembered = this.reverse.get(uid);
    if (remembered?.for === key && !dnsChecked) return { relays, reverse: remembered.lookups };
    const lookups = addresses.length ? await this.ctx.reverse(addresses, resolvers) : [];
    this.reverse.set(uid, { for: key, lookups });
    return { relays, reverse: lookups };
  }

  /** The domain's records for these keys, with SPF from the MailRelays that sign for it. */
  private records(domain: SenderDomain, keys: readonly DkimKeyStatus[], pems: ReadonlyMap<string, string>): DomainRecords {
    return senderDomainRecords(
      domain,
      this.ctx.relays(),
      keys.map((k) => ({ selector: k.selector, algorithm: k.algorithm, publicKey: dkimPublicKeyFromPem(pems.get(k.selector)!, `DKIM key ${k.selector} of ${domain.spec.domain}`).publicKey })),
    );
  }

  private async applySecret(domain: SenderDomain, keys: readonly DkimKeyStatus[], pems: ReadonlyMap<string, string>): Promise<void> {
    const desired = dkimSecret(domain, keys, pems);
    // `data`, not `stringData`: applied fields must read back as they were written.
    const { stringData, ...rest } = desired as typeof desired & { stringData: Record<string, string> };
    await this.ctx.client.apply({ ...rest, data: Object.fromEntries(Object.entries(stringData).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) } as never);
  }

  /** The DNSEndpoint applied; the API server's words when it refused it. */
  private async applyEndpoint(domain: SenderDomain, records: DomainRecords): Promise<string | undefined> {
    try {
      await this.ctx.client.apply(dnsEndpoint(domain, records) as never);
      return undefined;
    } catch (err) {
      return `${(err as Error).message}`;
    }
  }

  /** Status only when it changed (lastVerifiedAt alone is not a change worth a write). */
  private async writeStatus(domain: SenderDomain, status: SenderDomainStatus): Promise<void> {
    if (!statusChanged(domain.status, status, ['lastVerifiedAt'])) return;
    await this.ctx.client.patchStatus({ apiVersion: domain.apiVersion, kind: domain.kind, namespace: domain.metadata.namespace, name: domain.metadata.name }, status);
  }
}
