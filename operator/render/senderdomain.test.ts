import { describe, expect, it } from 'vitest';
import { API_VERSION, mailRelaySpecSchema, senderDomainSpecSchema, type MailRelay, type SenderDomain } from '../api/v1alpha1.js';
import { dnsEndpoint, senderDomainRecords } from './senderdomain.js';

const domain = (spec: object = {}): SenderDomain => ({
  apiVersion: API_VERSION,
  kind: 'SenderDomain',
  metadata: { name: 'example-com', namespace: 'mail', uid: 'uid-sd', labels: { relay: 'outbound' } },
  spec: senderDomainSpecSchema.parse({ domain: 'example.com', dnsEndpoint: { enabled: true }, ...spec }),
});
const relay: MailRelay = {
  apiVersion: API_VERSION,
  kind: 'MailRelay',
  metadata: { name: 'outbound', namespace: 'mail' },
  spec: mailRelaySpecSchema.parse({ senderDomainSelector: { matchLabels: { relay: 'outbound' } }, delivery: { egressAddresses: ['203.0.113.7'] } }),
};

describe('senderDomainRecords: a return path', () => {
  it('gets the domain\'s SPF record at the return path, in status.records and the DNSEndpoint, and a warning that it needs an MX record', () => {
    const records = senderDomainRecords(domain({ returnPath: 'bounces.example.com' }), [relay], []);
    const spf = records.records.filter((r) => r.purpose === 'spf');
    expect(spf.map((r) => [r.name, r.value])).toEqual([
      ['example.com', 'v=spf1 ip4:203.0.113.7 ~all'],
      ['bounces.example.com', 'v=spf1 ip4:203.0.113.7 ~all'],
    ]);
    expect(records.warnings).toContainEqual(expect.stringMatching(/^bounces\.example\.com needs an MX record naming the public host of the relays' bounces listener/));
    const endpoint = dnsEndpoint(domain({ returnPath: 'bounces.example.com' }), records) as unknown as { spec: { endpoints: { dnsName: string; recordType: string; targets: string[] }[] } };
    expect(endpoint.spec.endpoints).toContainEqual({ dnsName: 'bounces.example.com', recordType: 'TXT', targets: ['v=spf1 ip4:203.0.113.7 ~all'], recordTTL: 300 });
  });

  it("with a MailRelay of the namespace whose bounces listener has a public host: its MX record, in status.records and the DNSEndpoint, and no warning", () => {
    // The bounces listener may be another MailRelay's than the one that signs (one return path key per namespace).
    const inbound: MailRelay = { ...relay, metadata: { name: 'inbound', namespace: 'mail' }, spec: mailRelaySpecSchema.parse({ bounces: { enabled: true, mxHost: 'bounces-mx.example.com' } }) };
    const elsewhere: MailRelay = { ...inbound, metadata: { name: 'a-elsewhere', namespace: 'other' }, spec: mailRelaySpecSchema.parse({ bounces: { enabled: true, mxHost: 'wrong.example.net' } }) };
    const records = senderDomainRecords(domain({ returnPath: 'bounces.example.com' }), [relay, inbound, elsewhere], []);
    expect(records.records).toContainEqual(expect.objectContaining({ name: 'bounces.example.com', type: 'MX', value: '10 bounces-mx.example.com', purpose: 'mx' }));
    expect(records.warnings.join('\n')).not.toMatch(/needs an MX record/);
    const endpoint = dnsEndpoint(domain({ returnPath: 'bounces.example.com' }), records) as unknown as { spec: { endpoints: { dnsName: string; recordType: string; targets: string[] }[] } };
    expect(endpoint.spec.endpoints).toContainEqual({ dnsName: 'bounces.example.com', recordType: 'MX', targets: ['10 bounces-mx.example.com'], recordTTL: 300 });
  });

  it('without one: no record and no warning about it', () => {
    const records = senderDomainRecords(domain(), [relay], []);
    expect(records.records.filter((r) => r.purpose === 'spf').map((r) => r.name)).toEqual(['example.com']);
    expect(records.warnings.join('\n')).not.toMatch(/MX record/);
  });
});

describe('senderDomainRecords: link hosts', () => {
  it("a selecting MailRelay's spec.links.publicHost gives each unsubscribe and tracking host under the domain a CNAME, in status.records and the DNSEndpoint; without it, a warning", () => {
    const linked: MailRelay = { ...relay, spec: mailRelaySpecSchema.parse({ ...relay.spec, links: { publicHost: 'ingress.example.net' } }) };
    const spec = { unsubscribe: { url: 'https://links.example.com' }, tracking: { url: 'https://t.example.com' } };
    const records = senderDomainRecords(domain(spec), [linked], []);
    expect(records.records.filter((r) => r.type === 'CNAME').map((r) => [r.name, r.value])).toEqual([
      ['links.example.com', 'ingress.example.net'],
      ['t.example.com', 'ingress.example.net'],
    ]);
    const endpoint = dnsEndpoint(domain(spec), records) as unknown as { spec: { endpoints: unknown[] } };
    expect(endpoint.spec.endpoints).toContainEqual({ dnsName: 't.example.com', recordType: 'CNAME', targets: ['ingress.example.net'], recordTTL: 300 });
    expect(senderDomainRecords(domain(spec), [relay], []).warnings).toContainEqual(expect.stringMatching(/^t\.example\.com must reach the relays' links endpoint/));
  });
});
