import { describe, expect, it } from 'vitest';
import { resourcePath, type AnyObject } from '../kube/client.js';
import { mailRelayWatches } from './mailrelay.js';
import { senderDomainWatches } from './senderdomain.js';
import { withoutForeignValues, type Watch } from './watches.js';

const obj = (kind: string, name: string, extra: Partial<AnyObject> = {}): AnyObject => ({ apiVersion: 'x', kind, metadata: { namespace: 'mail', name, ...(extra.metadata ?? {}) }, ...extra }) as AnyObject;
const requeued = (watches: readonly Watch[], kind: string, o: AnyObject | undefined, previous: AnyObject | undefined) =>
  watches.filter((w) => w.kind === kind).flatMap((w) => w.requeue(`mail/${(o ?? previous)!.metadata.name}`, o, previous, (ns) => [`${ns}/all-of-them`]));

describe('what requeues what', () => {
  it('a MailRelay: itself, its own objects by owner, and a SenderDomain change that it renders (not a status-only one)', () => {
    expect(requeued(mailRelayWatches, 'MailRelay', obj('MailRelay', 'out'), undefined)).toEqual(['mail/out']);
    const owned = obj('Deployment', 'out', { metadata: { name: 'out', ownerReferences: [{ kind: 'MailRelay', name: 'out' }] } as never });
    expect(requeued(mailRelayWatches, 'Deployment', undefined, owned)).toEqual(['mail/out']);
    const domain = obj('SenderDomain', 'example', { spec: { domain: 'example.com' }, status: { keys: [], conditions: [] } });
    expect(requeued(mailRelayWatches, 'SenderDomain', { ...domain, status: { keys: [], conditions: [{ type: 'DNSVerified' }] } }, domain)).toEqual([]);
    expect(requeued(mailRelayWatches, 'SenderDomain', { ...domain, status: { keys: [{ selector: 's1' }] } }, domain)).toEqual(['mail/all-of-them']);
  });

  it('a MailRelay: a Secret the user makes appearing, going or changing its key names (a webhook\'s key ids), not its values or the operator\'s own Secrets', () => {
    const secret = obj('Secret', 'crm-keys', { data: { 'k2026-12': 'YQ==' } });
    expect(requeued(mailRelayWatches, 'Secret', secret, undefined)).toEqual(['mail/all-of-them']);
    expect(requeued(mailRelayWatches, 'Secret', { ...secret, data: { 'k2026-12': 'Yg==' } }, secret)).toEqual([]);
    expect(requeued(mailRelayWatches, 'Secret', { ...secret, data: { 'k2026-12': 'YQ==', 'k2027-01': 'Yw==' } }, secret)).toEqual(['mail/all-of-them']);
    expect(requeued(mailRelayWatches, 'Secret', undefined, secret)).toEqual(['mail/all-of-them']);
    // Another tool's managed-by (a Helm chart made the Secret) is still the user's.
    const helm = obj('Secret', 'crm-keys', { metadata: { name: 'crm-keys', labels: { 'app.kubernetes.io/managed-by': 'Helm' } } as never, data: { k1: 'YQ==' } });
    expect(requeued(mailRelayWatches, 'Secret', helm, undefined)).toEqual(['mail/all-of-them']);
    expect(withoutForeignValues(helm).data).toEqual({ k1: '' });
    const handoff = obj('Secret', 'out-handoff', { metadata: { name: 'out-handoff', labels: { 'app.kubernetes.io/managed-by': 'mailfleet-operator' }, ownerReferences: [{ kind: 'MailRelay', name: 'out' }] } as never, data: { token: 'eA==' } });
    expect(requeued(mailRelayWatches, 'Secret', { ...handoff, data: {} }, handoff)).toEqual(['mail/out']);
    // The namespace's return path key (no owner): made or gone requeues every MailRelay of the namespace.
    const key = obj('Secret', 'mailfleet-bounces-key', { metadata: { name: 'mailfleet-bounces-key', labels: { 'app.kubernetes.io/managed-by': 'mailfleet-operator' } } as never, data: { key: 'eA==' } });
    expect(requeued(mailRelayWatches, 'Secret', undefined, key)).toEqual(['mail/all-of-them']);
    expect(requeued(mailRelayWatches, 'Secret', key, undefined)).toEqual(['mail/all-of-them']);
    expect(requeued(mailRelayWatches, 'Secret', key, key)).toEqual([]);
    // The namespace's unsubscribe links key, the same.
    const links = obj('Secret', 'mailfleet-links-key', { metadata: { name: 'mailfleet-links-key', labels: { 'app.kubernetes.io/managed-by': 'mailfleet-operator' } } as never, data: { key: 'eA==' } });
    expect(requeued(mailRelayWatches, 'Secret', undefined, links)).toEqual(['mail/all-of-them']);
    expect(requeued(mailRelayWatches, 'Secret', links, links)).toEqual([]);
  });

  it('a MailRelay: its Ingress NAME-links edited or deleted, by owner', () => {
    const ingress = obj('Ingress', 'out-links', { apiVersion: 'networking.k8s.io/v1', metadata: { name: 'out-links', ownerReferences: [{ kind: 'MailRelay', name: 'out' }] } as never });
    expect(mailRelayWatches.filter((w) => w.kind === 'Ingress').map((w) => [w.apiVersion, w.labelSelector])).toEqual([['networking.k8s.io/v1', 'app.kubernetes.io/managed-by=mailfleet-operator']]);
    expect(requeued(mailRelayWatches, 'Ingress', undefined, ingress)).toEqual(['mail/out']);
  });

  it('every watched kind is one the client knows the path of (its informer lists and watches it; the controller applies it)', () => {
    for (const w of [...mailRelayWatches, ...senderDomainWatches]) expect(() => resourcePath(w.apiVersion, w.kind, 'mail'), `${w.apiVersion} ${w.kind}`).not.toThrow();
  });

  it('the Secret cache keeps the key names of Secrets the operator did not make, never their values', () => {
    const foreign = obj('Secret', 'crm-keys', { type: 'Opaque', data: { 'k2026-12': 'c2VjcmV0' } } as never);
    expect(withoutForeignValues(foreign)).toEqual({ apiVersion: 'x', kind: 'Secret', metadata: foreign.metadata, type: 'Opaque', data: { 'k2026-12': '' } });
    const own = obj('Secret', 'dkim', { metadata: { name: 'dkim', labels: { 'app.kubernetes.io/managed-by': 'mailfleet-operator' } } as never, data: { 'a.pem': 'cGVt' } });
    expect(withoutForeignValues(own)).toBe(own);
  });

  it('a SenderDomain: itself, its Secret and DNSEndpoint by owner, and a MailRelay spec change (SPF), not a relay that is only someone else\'s', () => {
    expect(requeued(senderDomainWatches, 'SenderDomain', obj('SenderDomain', 'example'), undefined)).toEqual(['mail/example']);
    const secret = obj('Secret', 'example-dkim', { metadata: { name: 'example-dkim', ownerReferences: [{ kind: 'SenderDomain', name: 'example' }] } as never });
    expect(requeued(senderDomainWatches, 'Secret', secret, undefined)).toEqual(['mail/example']);
    const relaySecret = obj('Secret', 'out-handoff', { metadata: { name: 'out-handoff', ownerReferences: [{ kind: 'MailRelay', name: 'out' }] } as never });
    expect(requeued(senderDomainWatches, 'Secret', relaySecret, undefined)).toEqual([]);
    const relay = obj('MailRelay', 'out', { spec: { replicas: 2 } });
    expect(requeued(senderDomainWatches, 'MailRelay', { ...relay, status: { readyReplicas: 2 } }, relay)).toEqual([]);
    expect(requeued(senderDomainWatches, 'MailRelay', { ...relay, spec: { replicas: 3 } }, relay)).toEqual(['mail/all-of-them']);
    // BulkSenderReady: egress addresses (FCrDNS) and the route (TLS) of a selecting relay.
    const mx = obj('MailRelay', 'out', { spec: { delivery: { route: 'mx', egressAddresses: ['203.0.113.7'] } } });
    expect(requeued(senderDomainWatches, 'MailRelay', { ...mx, spec: { delivery: { route: 'mx', egressAddresses: ['203.0.113.8'] } } }, mx)).toEqual(['mail/all-of-them']);
    expect(requeued(senderDomainWatches, 'MailRelay', { ...mx, spec: { delivery: { route: 'smarthost', smarthost: { host: 'smtp.example.net' }, egressAddresses: ['203.0.113.7'] } } }, mx)).toEqual(['mail/all-of-them']);
  });
});
