/**
 * A SenderDomain's desired objects and records, as pure functions: the DKIM key Secret (key
 * material comes in; this module never generates keys), the DNS records to publish (with the
 * relay's records library, from the facts of the MailRelays that sign for the domain), and
 * the optional external-dns DNSEndpoint.
 */
import { duration } from '../../relay/config.js';
import { linkHostsOf, recordsFor, type DkimRecordKey, type DomainRecords, type RelayFacts } from '../../relay/records.js';
import { API_VERSION, type DkimKeyStatus, type MailRelay, type SenderDomain } from '../api/v1alpha1.js';
import { matches } from '../kube/selector.js';
import { linksWarnings } from './links.js';
import type { KubeObject } from './mailrelay.js';

/** The Secret's annotation that lists its keys and their rotation state: the source of truth for keys. */
export const KEYS_ANNOTATION = 'mailfleet.io/dkim-keys';

export const dkimSecretName = (domain: SenderDomain) => `${domain.metadata.name}-dkim`;

/** The MailRelays (of the same namespace) whose senderDomainSelector picks this domain. */
export function relaysSigningFor(domain: SenderDomain, relays: readonly MailRelay[]): MailRelay[] {
  return relays.filter((r) => (r.metadata.namespace ?? 'default') === (domain.metadata.namespace ?? 'default') && matches(r.spec.senderDomainSelector, domain.metadata.labels));
}

/**
 * What SPF must allow, from the relays that send for the domain: their egress addresses and
 * smarthost. Relays that disagree (one by MX, one through SES) get the first by name; a
 * warning in the records says so.
 */
export function relayFacts(relays: readonly MailRelay[]): { facts: RelayFacts; warnings: string[] } {
  const sorted = [...relays].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const first = sorted[0];
  const facts: RelayFacts = {
    route: first?.spec.delivery.route ?? 'mx',
    smarthostHost: first?.spec.delivery.route === 'smarthost' ? first.spec.delivery.smarthost?.host : undefined,
    egressAddresses: [...new Set(sorted.flatMap((r) => r.spec.delivery.egressAddresses))],
  };
  const routes = new Set(sorted.map((r) => `${r.spec.delivery.route}:${r.spec.delivery.smarthost?.host ?? ''}`));
  const warnings = routes.size > 1 ? [`MailRelays ${sorted.map((r) => r.metadata.name).join(', ')} deliver differently; SPF follows ${first!.metadata.name}: add the others' senders to spec.spf`] : [];
  if (!sorted.length) warnings.push('no MailRelay selects this SenderDomain yet: its mail is not signed until one does');
  return { facts, warnings };
}

export function senderDomainRecords(domain: SenderDomain, relays: readonly MailRelay[], keys: DkimRecordKey[]): DomainRecords {
  const selecting = relaysSigningFor(domain, relays);
  const { facts: signing, warnings } = relayFacts(selecting);
  // Reports may reach the bounces listener of any MailRelay of the namespace (one return path key per namespace).
  const bouncesMxHost = [...relays]
    .filter((r) => r.metadata.namespace === domain.metadata.namespace && r.spec.bounces?.enabled && r.spec.bounces.mxHost)
    .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))[0]?.spec.bounces?.mxHost;
  // The links of its mail reach the links endpoint of a MailRelay that selects it.
  const linksHost = [...selecting].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).find((r) => r.spec.links?.publicHost)?.spec.links?.publicHost;
  const facts = { ...signing, bouncesMxHost, linksHost };
  const spec = domain.spec;
  const records = recordsFor(
    { domain: spec.domain, spf: spec.spf, dmarc: spec.dmarc, tlsRpt: spec.tlsRpt, returnPath: spec.returnPath, linkHosts: linkHostsOf(spec), mtaSts: spec.mtaSts && { mode: spec.mtaSts.mode, mx: spec.mtaSts.mx, maxAge: duration.parse(spec.mtaSts.maxAge) } },
    facts,
    keys,
  );
  return { ...records, warnings: [...records.warnings, ...warnings, ...linksWarnings(domain, selecting)] };
}

const owner = (domain: SenderDomain) => ({ apiVersion: API_VERSION, kind: 'SenderDomain', name: domain.metadata.name, uid: domain.metadata.uid ?? '', controller: true, blockOwnerDeletion: true });
const owned = (domain: SenderDomain) => (domain.metadata.uid ? { ownerReferences: [owner(domain)] } : {});
const labels = (domain: SenderDomain) => ({ 'app.kubernetes.io/name': 'mailfleet-dkim', 'app.kubernetes.io/instance': domain.metadata.name, 'app.kubernetes.io/managed-by': 'mailfleet-operator' });

/**
 * The Secret holding each key as `SELECTOR.pem`, with the key list in an annotation (left out
 * of a preview, whose keys do not exist yet).
 */
export function dkimSecret(domain: SenderDomain, keys: readonly DkimKeyStatus[], pems: ReadonlyMap<string, string>, preview = false): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: { name: dkimSecretName(domain), namespace: domain.metadata.namespace ?? 'default', labels: labels(domain), ...(preview ? {} : { annotations: { [KEYS_ANNOTATION]: JSON.stringify(keys) } }), ...owned(domain) },
    stringData: Object.fromEntries(keys.map((k) => [`${k.selector}.pem`, pems.get(k.selector) ?? ''])),
  };
}

/** The keys a Secret says it holds (annotation), keeping only those whose material is there. */
export function keysOfSecret(secret: { metadata?: { annotations?: Record<string, string> }; data?: Record<string, string> } | undefined): DkimKeyStatus[] {
  const raw = secret?.metadata?.annotations?.[KEYS_ANNOTATION];
  if (!raw) return [];
  try {
    return (JSON.parse(raw) as DkimKeyStatus[]).filter((k) => secret?.data?.[`${k.selector}.pem`]);
  } catch {
    return [];
  }
}

/**
 * An external-dns DNSEndpoint publishing the records. TXT targets are the plain values, as
 * external-dns expects: its providers quote them and split long ones for their APIs.
 */
export function dnsEndpoint(domain: SenderDomain, records: DomainRecords): KubeObject {
  return {
    apiVersion: 'externaldns.k8s.io/v1alpha1',
    kind: 'DNSEndpoint',
    metadata: { name: `${domain.metadata.name}-records`, namespace: domain.metadata.namespace ?? 'default', labels: labels(domain), ...owned(domain) },
    spec: { endpoints: records.records.map((r) => ({ dnsName: r.name, recordType: r.type, targets: [r.value], recordTTL: domain.spec.dnsEndpoint.ttl })) },
  };
}
