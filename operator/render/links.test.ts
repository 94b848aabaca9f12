import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../relay/config.js';
import { API_VERSION, mailRelaySpecSchema, senderDomainSpecSchema, specIssues, type MailRelay, type SenderDomain } from '../api/v1alpha1.js';
import { linksWarnings, staleLinksObjects, type LinksObjectRef } from './links.js';
import { relaySecrets, renderMailRelay, type KubeObject, type RelayInputs } from './mailrelay.js';
import { senderDomainRecords } from './senderdomain.js';

const relay = (spec: object = {}, name = 'outbound'): MailRelay => ({
  apiVersion: API_VERSION,
  kind: 'MailRelay',
  metadata: { name, namespace: 'mail', uid: 'uid-relay' },
  spec: mailRelaySpecSchema.parse({ listeners: [{ name: 'smtp', port: 2526, tls: 'none', auth: 'none', trustedNetworks: ['10.0.0.0/8'] }], senderDomainSelector: { matchLabels: { relay: 'outbound' } }, ...spec }),
});
const domain = (spec: object = {}, name = 'example-com'): SenderDomain => ({
  apiVersion: API_VERSION,
  kind: 'SenderDomain',
  metadata: { name, namespace: 'mail', uid: `uid-${name}`, labels: { relay: 'outbound' } },
  spec: senderDomainSpecSchema.parse({ domain: 'example.com', ...spec }),
  status: { secretName: `${name}-dkim`, keys: [{ selector: 'mf-1-rsa', algorithm: 'rsa-sha256', state: 'active', createdAt: '2026-01-01T00:00:00Z' }] },
});
const unsubscribing = domain({ unsubscribe: { url: 'https://links.example.com' } });
const existing = new Set(['outbound-handoff', 'example-com-dkim', 'example-net-dkim', 'mailfleet-links-key', 'mailfleet-bounces-key']);
const inputs = (senderDomains: SenderDomain[], over: Partial<RelayInputs> = {}): RelayInputs => ({ senderDomains, secretExists: (n) => existing.has(n), secretKeys: () => [], defaultImage: 'ghcr.io/mailfleet/mailfleet:0.1.0', serviceMonitors: false, ...over });

function rendered(r: MailRelay, i: RelayInputs) {
  const result = renderMailRelay(r, i);
  if (!result.ok) throw new Error(result.message);
  const byKind = (kind: string, name?: string) => result.objects.find((o) => o.kind === kind && (!name || o.metadata.name === name)) as (KubeObject & Record<string, any>) | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any -- objects read back in assertions
  return { ...result, byKind, parsed: parseConfig(YAML.parse(result.config), '/') };
}
const ingressSpec = { ingress: { enabled: true, className: 'nginx', annotations: { 'cert-manager.io/cluster-issuer': 'letsencrypt' } } };

describe('one-click unsubscribe: render', () => {
  it('spec.links.ingress and a SenderDomain with spec.unsubscribe: links and unsubscribe in a config the relay itself parses; port, key mount, Service and Ingress with TLS', () => {
    const { parsed, byKind, objects } = rendered(relay({ links: ingressSpec }), inputs([unsubscribing]));
    expect(parsed.links).toEqual({ keyFile: '/etc/mailfleet/links/key', address: '0.0.0.0', port: 8090 });
    expect(parsed.senderDomains[0]!.unsubscribe).toEqual({ url: 'https://links.example.com' });
    const pod = byKind('Deployment')!.spec.template.spec;
    expect(pod.containers[0].ports).toContainEqual({ name: 'links', containerPort: 8090, protocol: 'TCP' });
    expect(pod.volumes).toContainEqual({ name: 'links-key', secret: { secretName: 'mailfleet-links-key', defaultMode: 0o440, items: [{ key: 'key', path: 'key' }] } });
    expect(pod.containers[0].volumeMounts).toContainEqual({ name: 'links-key', mountPath: '/etc/mailfleet/links', readOnly: true });
    expect(byKind('Service', 'outbound-links')!.spec).toEqual({ type: 'ClusterIP', selector: { 'app.kubernetes.io/name': 'mailfleet-relay', 'app.kubernetes.io/instance': 'outbound' }, ports: [{ name: 'http', port: 80, targetPort: 'links', protocol: 'TCP' }] });
    const ingress = byKind('Ingress', 'outbound-links')!;
    expect(ingress.apiVersion).toBe('networking.k8s.io/v1');
    expect(ingress.metadata).toMatchObject({ annotations: { 'cert-manager.io/cluster-issuer': 'letsencrypt' }, ownerReferences: [{ kind: 'MailRelay', name: 'outbound', controller: true }] });
    expect(ingress.spec).toEqual({
      ingressClassName: 'nginx',
      tls: [{ hosts: ['links.example.com'], secretName: 'outbound-links-tls' }],
      rules: [{ host: 'links.example.com', http: { paths: ['/u/', '/o/', '/c/'].map((path) => ({ path, pathType: 'Prefix', backend: { service: { name: 'outbound-links', port: { name: 'http' } } } })) } }],
    });
    const models: Record<string, new (o: object) => { validate(): void }> = { Deployment, ConfigMap, Service, PodDisruptionBudget, Ingress };
    for (const o of objects) expect(() => new models[o.kind]!(o).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
    expect(relaySecrets(relay({ links: ingressSpec }), [unsubscribing])).toContainEqual({ name: 'mailfleet-links-key', for: "the unsubscribe links' key the operator makes, one per namespace", madeBy: 'operator' });
  });

  it('one rule per host, sorted and once; TLS for them all in tlsSecretName; an http loopback URL (tests) gets no rule; mailto passed on only when set', () => {
    const net = domain({ domain: 'example.net', returnPath: 'bounces.example.net', unsubscribe: { url: 'https://links.example.com', mailto: true } }, 'example-net');
    const local = domain({ domain: 'example.org', unsubscribe: { url: 'http://127.0.0.1:8090' } }, 'example-net');
    const other = domain({ domain: 'example.org', unsubscribe: { url: 'https://go.example.org:8443' } }, 'example-net');
    const r = relay({ links: { ingress: { enabled: true, tlsSecretName: 'links-cert' } } });
    const { byKind, parsed } = rendered(r, inputs([unsubscribing, net, other]));
    expect(byKind('Ingress')!.spec.tls).toEqual([{ hosts: ['go.example.org', 'links.example.com'], secretName: 'links-cert' }]);
    expect(byKind('Ingress')!.spec.rules.map((x: { host: string }) => x.host)).toEqual(['go.example.org', 'links.example.com']);
    expect(parsed.senderDomains.map((d) => d.unsubscribe)).toEqual([{ url: 'https://links.example.com' }, { url: 'https://links.example.com', mailto: true }, { url: 'https://go.example.org:8443' }]);
    expect(rendered(r, inputs([local])).byKind('Ingress')).toBeUndefined();
  });

  it('a SenderDomain with spec.tracking: tracking in the relay config (defaults filled in), links on, its host in the Ingress, and a warning when no Ingress serves it', () => {
    const tracked = domain({ tracking: { url: 'https://t.example.com', excludeDomains: ['bank.test'] } });
    const { parsed, byKind } = rendered(relay({ links: ingressSpec }), inputs([tracked, domain({ domain: 'example.net', unsubscribe: { url: 'https://links.example.com' } }, 'example-net')]));
    expect(parsed.senderDomains[0]!.tracking).toEqual({ url: 'https://t.example.com', opens: true, clicks: true, excludeDomains: ['bank.test'] });
    expect(parsed.links?.port).toBe(8090);
    expect(byKind('Ingress')!.spec.tls).toEqual([{ hosts: ['links.example.com', 't.example.com'], secretName: 'outbound-links-tls' }]);
    expect(rendered(relay(), inputs([tracked])).byKind('Service', 'outbound-links')).toBeDefined();
    expect(linksWarnings(tracked, [relay()])).toEqual([expect.stringMatching(/^https:\/\/t\.example\.com \(spec\.tracking\.url\) is served by no Ingress/)]);
    expect(senderDomainSpecSchema.safeParse({ domain: 'example.com', tracking: { url: 'https://t.example.com/path' } }).success).toBe(false);
  });

  it('a SenderDomain with spec.unsubscribe turns links on without spec.links: the key, the port and a ClusterIP Service, no Ingress', () => {
    const { parsed, byKind } = rendered(relay(), inputs([unsubscribing]));
    expect(parsed.links?.keyFile).toBe('/etc/mailfleet/links/key');
    expect(byKind('Service', 'outbound-links')!.spec.type).toBe('ClusterIP');
    expect(byKind('Ingress')).toBeUndefined();
  });

  it('spec.links.enabled alone: the endpoint and its Service, with the spec\'s type and annotations; no host, so no Ingress', () => {
    const svc = { type: 'LoadBalancer', annotations: { 'example.com/lb': 'internal' }, loadBalancerIP: '203.0.113.80' };
    const { parsed, byKind } = rendered(relay({ links: { enabled: true, service: svc, ...ingressSpec } }), inputs([domain()]));
    expect(parsed.links?.port).toBe(8090);
    expect(byKind('Service', 'outbound-links')).toMatchObject({ metadata: { annotations: svc.annotations }, spec: { type: 'LoadBalancer', loadBalancerIP: '203.0.113.80' } });
    expect(byKind('Ingress')).toBeUndefined();
  });

  it('neither: no links section, key, port, Service or Ingress; spec.links.enabled false is the same', () => {
    for (const r of [relay(), relay({ links: { enabled: false } })]) {
      const { config, byKind } = rendered(r, inputs([domain()]));
      expect(YAML.parse(config)).not.toHaveProperty('links');
      expect(JSON.stringify(byKind('Deployment'))).not.toContain('links');
      expect(byKind('Service', 'outbound-links')).toBeUndefined();
      expect(relaySecrets(r, [domain()]).map((s) => s.name)).not.toContain('mailfleet-links-key');
    }
  });

  it('waits for the key Secret like the others, naming it; a listener on port 8090 or named links is Invalid, naming the field and what to do', () => {
    expect(renderMailRelay(relay(), inputs([unsubscribing], { secretExists: (n) => n !== 'mailfleet-links-key' && existing.has(n) }))).toEqual({ ok: false, reason: 'Missing', message: "waiting for Secret mailfleet-links-key (the unsubscribe links' key the operator makes, one per namespace)" });
    const clash = relay({ listeners: [{ name: 'links', port: 8090, tls: 'none', auth: 'none', trustedNetworks: ['10.0.0.0/8'] }] });
    expect(renderMailRelay(clash, inputs([unsubscribing]))).toEqual({
      ok: false,
      reason: 'Invalid',
      message: 'spec.listeners.0.port: the relay binds 8090 for the links endpoint of one-click unsubscribe; choose another port; spec.listeners.0.name: the name links is kept for the links endpoint\'s container port; choose another name',
    });
    expect(renderMailRelay(clash, inputs([domain()])).ok).toBe(true);
  });
});

describe('one-click unsubscribe: what the relay no longer renders', () => {
  const ownedBy = (uid: string) => ({ metadata: { ownerReferences: [{ apiVersion: API_VERSION, kind: 'MailRelay', name: 'outbound', uid, controller: true }] } });
  const cache = (objects: Record<string, { metadata: { ownerReferences?: unknown } }>) => (ref: LinksObjectRef) => objects[`${ref.kind}/${ref.name}`];
  const both = { 'Ingress/outbound-links': ownedBy('uid-relay'), 'Service/outbound-links': ownedBy('uid-relay') };

  it('the Ingress after spec.links.ingress goes off, both after links do; nothing while they are rendered', () => {
    const withIngress = renderMailRelay(relay({ links: ingressSpec }), inputs([unsubscribing]));
    const withoutIngress = renderMailRelay(relay(), inputs([unsubscribing]));
    const off = renderMailRelay(relay(), inputs([domain()]));
    if (!withIngress.ok || !withoutIngress.ok || !off.ok) throw new Error('not rendered');
    expect(staleLinksObjects(relay({ links: ingressSpec }), withIngress.objects, cache(both))).toEqual([]);
    expect(staleLinksObjects(relay(), withoutIngress.objects, cache(both))).toEqual([{ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', name: 'outbound-links' }]);
    expect(staleLinksObjects(relay(), off.objects, cache(both)).map((r) => r.kind)).toEqual(['Ingress', 'Service']);
  });

  it('never an object another owns, one the user made of that name, one not there, or anything for a relay without a uid (a preview)', () => {
    expect(staleLinksObjects(relay(), [], cache({ 'Ingress/outbound-links': ownedBy('uid-other'), 'Service/outbound-links': { metadata: {} } }))).toEqual([]);
    expect(staleLinksObjects(relay(), [], cache({}))).toEqual([]);
    expect(staleLinksObjects({ ...relay(), metadata: { name: 'outbound', namespace: 'mail' } }, [], cache(both))).toEqual([]);
  });
});

describe('one-click unsubscribe: the schema', () => {
  const sdIssues = (spec: object) => {
    const r = senderDomainSpecSchema.safeParse({ domain: 'example.com', ...spec });
    return r.success ? [] : specIssues(r.error.issues).map((i) => `${i.path.join('.')}: ${i.message}`);
  };
  const url = (u: string) => sdIssues({ unsubscribe: { url: u } });

  it('the URL is an https origin, or http to a loopback host; no path, query or fragment', () => {
    for (const ok of ['https://links.example.com', 'https://links.example.com:8443', 'http://localhost:8090', 'http://127.0.0.1:8090', 'http://[::1]:8090']) expect(url(ok), ok).toEqual([]);
    const refused = ['unsubscribe.url: an https:// origin such as https://links.example.com, with no path (the relays serve /u/TOKEN at its root); http:// only to a loopback host, for tests'];
    for (const bad of ['http://links.example.com', 'https://links.example.com/', 'https://links.example.com/mail', 'https://links.example.com?x=1', 'https://Links.example.com', 'ftp://links.example.com', 'links.example.com']) expect(url(bad), bad).toEqual(refused);
  });

  it('mailto: true needs spec.returnPath, said at the field; false or omitted does not', () => {
    expect(sdIssues({ unsubscribe: { url: 'https://links.example.com', mailto: true } })).toEqual(['unsubscribe.mailto: unsubscribe.mailto needs spec.returnPath: the address is unsubscribe@RETURN-PATH, which a bounces listener takes; set returnPath or leave mailto out']);
    expect(sdIssues({ returnPath: 'bounces.example.com', unsubscribe: { url: 'https://links.example.com', mailto: true } })).toEqual([]);
    expect(sdIssues({ unsubscribe: { url: 'https://links.example.com', mailto: false } })).toEqual([]);
    expect(sdIssues({ unsubscribe: { url: 'https://links.example.com', mialto: true } })).toEqual(['unsubscribe.mialto: unknown field']);
  });

  it('spec.links: defaults, and unknown fields refused', () => {
    expect(mailRelaySpecSchema.parse({ links: {} }).links).toEqual({ enabled: false, service: { type: 'ClusterIP' }, ingress: { enabled: false } });
    const r = mailRelaySpecSchema.safeParse({ links: { ingress: { enabled: true, tlsSecret: 'x' } } });
    expect(r.success ? [] : specIssues(r.error.issues).map((i) => i.path.join('.'))).toEqual(['links.ingress.tlsSecret']);
  });
});

describe('one-click unsubscribe: the SenderDomain\'s warning', () => {
  it('no selecting MailRelay has spec.links.ingress: the URL must reach Service NAME-links, said in the records\' warnings', () => {
    const warnings = senderDomainRecords(unsubscribing, [relay(), relay({}, 'second')], []).warnings;
    expect(warnings).toContainEqual(
      'https://links.example.com (spec.unsubscribe.url) is served by no Ingress of the operator: the MailRelays that select example.com have spec.links.ingress off, so the URL must reach Service outbound-links or second-links (port 80) through your own Ingress or proxy, with TLS for links.example.com; or set spec.links.ingress.enabled on one of them',
    );
    expect(senderDomainRecords(unsubscribing, [relay(), relay({ links: ingressSpec }, 'second')], []).warnings.filter((w) => w.includes('unsubscribe'))).toEqual([]);
    // No relay selects it (the records say so), no unsubscribe, or a loopback URL for tests: nothing to say of links.
    expect(linksWarnings(unsubscribing, [])).toEqual([]);
    expect(linksWarnings(domain(), [relay()])).toEqual([]);
    expect(linksWarnings(domain({ unsubscribe: { url: 'http://127.0.0.1:8090' } }), [relay()])).toEqual([]);
  });
});
