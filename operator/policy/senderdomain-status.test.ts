import { describe, expect, it } from 'vitest';
import type { DnsRecord } from '../../relay/records.js';
import type { RecordCheck, VerifyStatus } from '../../relay/records-verify.js';
import { senderDomainSpecSchema, type DkimKeyStatus, type SenderDomain } from '../api/v1alpha1.js';
import { CONDITIONS } from '../controllers/reasons.js';
import { dnsCheckDue, invalidSpecStatus, senderDomainStatus, servedSelectors, type SenderDomainFacts, type SenderDomainStatus } from './senderdomain-status.js';

const t0 = new Date('2026-01-01T00:00:00Z');
const later = (ms: number) => new Date(t0.getTime() + ms);

function domain(spec: object = {}, status?: SenderDomainStatus): SenderDomain {
  return {
    apiVersion: 'mailfleet.io/v1alpha1',
    kind: 'SenderDomain',
    metadata: { name: 'example-com', namespace: 'mail', generation: 3, uid: 'uid-1' },
    spec: senderDomainSpecSchema.parse({ domain: 'example.com', ...spec }),
    ...(status ? { status } : {}),
  } as SenderDomain;
}

const key = (selector: string, state: DkimKeyStatus['state']): DkimKeyStatus => ({ selector, algorithm: selector.endsWith('-ed') ? 'ed25519-sha256' : 'rsa-sha256', state, createdAt: t0.toISOString(), ...(state === 'active' ? { activatedAt: t0.toISOString() } : {}) });
const record = (name: string, value: string, purpose: DnsRecord['purpose'], selector?: string): DnsRecord => ({ name, type: 'TXT', value, strings: [value], purpose, ...(selector ? { selector } : {}) });
const RECORDS = [record('example.com', 'v=spf1 mx ~all', 'spf'), record('mailfleet-1-rsa._domainkey.example.com', 'v=DKIM1; k=rsa; p=R', 'dkim', 'mailfleet-1-rsa'), record('mailfleet-1-ed._domainkey.example.com', 'v=DKIM1; k=ed25519; p=E', 'dkim', 'mailfleet-1-ed')];
const ACTIVE = [key('mailfleet-1-rsa', 'active'), key('mailfleet-1-ed', 'active')];
const check = (r: DnsRecord, status: VerifyStatus, extra: Partial<RecordCheck> = {}): RecordCheck => ({ record: r, status, served: [], ...extra });
const allServed = RECORDS.map((r) => check(r, 'match'));

const WITH_DMARC = [...RECORDS, record('_dmarc.example.com', 'v=DMARC1; p=none; adkim=r; aspf=r', 'dmarc')];
const BULK: SenderDomainFacts['bulkSender'] = {
  relays: [{ name: 'out', route: 'mx', egressAddresses: ['203.0.113.7'] }],
  reverse: [{ address: '203.0.113.7', ptr: ['mail.example.com'], forward: [{ name: 'mail.example.com', addresses: ['203.0.113.7'] }] }],
};

function facts(over: Partial<SenderDomainFacts> = {}): SenderDomainFacts {
  return { domain: domain(), secretName: 'example-com-dkim', keys: ACTIVE, waitingForDns: [], records: RECORDS, checks: allServed, lastCheckedAt: t0.getTime(), dnsEndpointServed: false, ...over };
}

const conditions = (status: SenderDomainStatus) => Object.fromEntries((status.conditions ?? []).map((c) => [c.type, `${c.status} ${c.reason}`]));
const message = (status: SenderDomainStatus, type: string) => status.conditions?.find((c) => c.type === type)?.message;

/** Each case: the facts, and the conditions the status must carry. */
const CASES: { name: string; status: () => SenderDomainStatus; want: Record<string, string> }[] = [
  {
    name: 'keys signing and every record served: Ready',
    status: () => senderDomainStatus(facts(), t0).status,
    want: { KeysReady: 'True Signing', DNSVerified: 'True RecordsServed', Ready: 'True Ready', Degraded: 'False Reconciled' },
  },
  {
    name: 'keys signing, a record not served: waiting for DNS',
    status: () => senderDomainStatus(facts({ checks: [check(RECORDS[0]!, 'missing'), ...allServed.slice(1)] }), t0).status,
    want: { KeysReady: 'True Signing', DNSVerified: 'False RecordsNotServed', Ready: 'False WaitingForDNS', Degraded: 'False Reconciled' },
  },
  {
    name: 'one of the two algorithms without an active key: waiting for keys',
    status: () => senderDomainStatus(facts({ keys: [ACTIVE[0]!, key('mailfleet-1-ed', 'next')] }), t0).status,
    want: { KeysReady: 'False Generating', DNSVerified: 'True RecordsServed', Ready: 'False WaitingForKeys', Degraded: 'False Reconciled' },
  },
  {
    name: 'a DNSEndpoint asked for where the cluster does not serve its API',
    status: () => senderDomainStatus(facts({ domain: domain({ dnsEndpoint: { enabled: true } }) }), t0).status,
    want: { Ready: 'True Ready', Degraded: 'True APINotServed' },
  },
  {
    name: 'a DNSEndpoint the API server refused',
    status: () => senderDomainStatus(facts({ domain: domain({ dnsEndpoint: { enabled: true } }), dnsEndpointServed: true, dnsEndpointError: 'denied' }), t0).status,
    want: { Ready: 'True Ready', Degraded: 'True ApplyFailed' },
  },
  {
    name: 'bulk sender facts, every check passing',
    status: () => senderDomainStatus(facts({ domain: domain({ unsubscribe: { url: 'https://links.example.com' } }), records: WITH_DMARC, checks: WITH_DMARC.map((r) => check(r, 'match')), bulkSender: BULK }), t0).status,
    want: { DNSVerified: 'True RecordsServed', BulkSenderReady: 'True RequirementsMet' },
  },
  {
    name: 'bulk sender facts, without spec.unsubscribe',
    status: () => senderDomainStatus(facts({ records: WITH_DMARC, checks: WITH_DMARC.map((r) => check(r, 'match')), bulkSender: BULK }), t0).status,
    want: { Ready: 'True Ready', BulkSenderReady: 'False RequirementsNotMet' },
  },
  {
    name: 'a spec the schema refuses',
    status: () => invalidSpecStatus(domain(), 'spec.domain: Invalid', t0),
    want: { Ready: 'False InvalidSpec' },
  },
];

describe('a SenderDomain\'s status, from what its controller gathered', () => {
  for (const c of CASES) it(`${c.name}: ${Object.entries(c.want).map(([t, v]) => `${t} ${v}`).join(', ')}`, () => expect(conditions(c.status())).toMatchObject(c.want));

  it('the cases above reach every condition and reason reasons.ts gives a SenderDomain', () => {
    const reached = new Set(CASES.flatMap((c) => Object.entries(c.want).map(([type, v]) => `${type} ${v.split(' ')[1]}`)));
    const declared = Object.entries(CONDITIONS.SenderDomain).flatMap(([type, c]) => c.reasons.map((r) => `${type} ${r}`));
    expect([...reached].sort()).toEqual([...declared].sort());
  });

  it('says in words which keys sign, which wait for DNS, and which records are not served', () => {
    const r = RECORDS[0]!;
    const { status } = senderDomainStatus(facts({ keys: [...ACTIVE, key('mailfleet-2-rsa', 'next')], waitingForDns: ['mailfleet-2-rsa'], checks: [check(r, 'different', { difference: 'served v=spf1 -all' }), ...allServed.slice(1)] }), t0);
    expect(message(status, 'KeysReady')).toBe('signing with mailfleet-1-rsa, mailfleet-1-ed; mailfleet-2-rsa wait for DNS before they sign');
    expect(message(status, 'DNSVerified')).toBe('1 of 3 records not served as recommended: example.com spf different (served v=spf1 -all)');
    expect(message(status, 'Ready')).toBe('publish the records in status.records (1 of 3 records not served as recommended: example.com spf different (served v=spf1 -all))');
    expect(status.activeSelectors).toBe('mailfleet-1-rsa,mailfleet-1-ed');
    expect(message(senderDomainStatus(facts({ keys: [] }), t0).status, 'KeysReady')).toBe('signing with no key yet');
  });

  it('shows each record with what DNS served: this check, else the last one in status, else unknown', () => {
    const previous = senderDomainStatus(facts({ checks: [check(RECORDS[0]!, 'error', { error: 'SERVFAIL' }), check(RECORDS[1]!, 'match')] }), t0).status;
    expect(previous.records!.map((r) => [r.dns, r.difference])).toEqual([
      ['error', 'SERVFAIL'],
      ['match', undefined],
      ['unknown', undefined],
    ]);
    expect(previous.records![1]).toMatchObject({ name: 'mailfleet-1-rsa._domainkey.example.com', selector: 'mailfleet-1-rsa', purpose: 'dkim', type: 'TXT' });
    // No check this pass: status keeps what the last one saw, and when.
    const again = senderDomainStatus(facts({ domain: domain({}, { ...previous, lastVerifiedAt: t0.toISOString() }), checks: undefined }), later(60_000)).status;
    expect(again.records).toEqual(previous.records);
    expect(again.lastVerifiedAt).toBe(t0.toISOString());
    expect(senderDomainStatus(facts(), later(60_000)).status.lastVerifiedAt).toBe(later(60_000).toISOString());
  });

  it('moves a condition\'s lastTransitionTime only when its status changes, and carries the generation', () => {
    const first = senderDomainStatus(facts({ checks: [check(RECORDS[0]!, 'missing')] }), t0).status;
    const same = senderDomainStatus(facts({ domain: domain({}, first), checks: [check(RECORDS[0]!, 'different')] }), later(1000)).status;
    const turned = senderDomainStatus(facts({ domain: domain({}, same) }), later(2000)).status;
    const at = (s: SenderDomainStatus, type: string) => s.conditions!.find((c) => c.type === type)!.lastTransitionTime;
    expect(at(same, 'DNSVerified')).toBe(t0.toISOString());
    expect(at(turned, 'DNSVerified')).toBe(later(2000).toISOString());
    expect(at(turned, 'KeysReady')).toBe(t0.toISOString());
    expect(turned.observedGeneration).toBe(3);
    expect(turned.conditions!.every((c) => c.observedGeneration === 3)).toBe(true);
  });

  it('gives Events for changes only: a DNS verdict that turned on a check, a Degraded message not said before', () => {
    const notServed = facts({ checks: [check(RECORDS[0]!, 'missing')] });
    const first = senderDomainStatus(notServed, t0);
    expect(first.events).toEqual([{ type: 'Warning', reason: 'DNSNotVerified', message: '3 of 3 records not served as recommended: example.com spf missing; mailfleet-1-rsa._domainkey.example.com dkim unknown; mailfleet-1-ed._domainkey.example.com dkim unknown' }]);
    expect(senderDomainStatus({ ...notServed, domain: domain({}, first.status) }, later(1000)).events).toEqual([]);
    const served = senderDomainStatus(facts({ domain: domain({}, first.status) }), later(2000));
    expect(served.events).toEqual([{ type: 'Normal', reason: 'DNSVerified', message: 'all 3 records served' }]);
    // Without a check this pass, no DNS Event even when the verdict differs from status.
    expect(senderDomainStatus(facts({ domain: domain({}, first.status), checks: undefined, records: [] }), later(3000)).events).toEqual([]);

    const endpoint = facts({ domain: domain({ dnsEndpoint: { enabled: true } }, served.status), dnsEndpointServed: true, dnsEndpointError: 'denied' });
    const refused = senderDomainStatus(endpoint, later(4000));
    expect(refused.events).toEqual([{ type: 'Warning', reason: 'ApplyFailed', message: 'could not apply DNSEndpoint example-com-records: denied' }]);
    expect(refused.retry).toBe('could not apply DNSEndpoint example-com-records: denied');
    expect(senderDomainStatus({ ...endpoint, domain: domain({ dnsEndpoint: { enabled: true } }, refused.status) }, later(5000)).events).toEqual([]);
    const notServedApi = senderDomainStatus({ ...endpoint, domain: domain({ dnsEndpoint: { enabled: true } }, refused.status), dnsEndpointServed: false, dnsEndpointError: undefined }, later(6000));
    expect(notServedApi.events.map((e) => e.reason)).toEqual(['APINotServed']);
    expect(notServedApi.retry).toBeUndefined();
    expect(message(notServedApi.status, 'Degraded')).toBe('spec.dnsEndpoint.enabled, but the cluster does not serve externaldns.k8s.io/v1alpha1: install external-dns with its DNSEndpoint CRD, or publish status.records yourself');
  });

  it('BulkSenderReady: on the records as this pass sees them, an Event when it turns, none without bulk sender facts', () => {
    const withUnsubscribe = domain({ unsubscribe: { url: 'https://links.example.com' } });
    const missing = senderDomainStatus(facts({ domain: withUnsubscribe, records: WITH_DMARC, checks: [check(WITH_DMARC[3]!, 'missing')], bulkSender: BULK }), t0);
    expect(message(missing.status, 'BulkSenderReady')).toBe(
      "SPF: example.com has not been checked yet (wait for the operator's first DNS check); DKIM: mailfleet-1-rsa._domainkey.example.com has not been checked yet (wait for the operator's first DNS check), mailfleet-1-ed._domainkey.example.com has not been checked yet (wait for the operator's first DNS check); DMARC: no record at _dmarc.example.com (publish the record in status.records)",
    );
    expect(missing.events.find((e) => e.reason === 'BulkSenderNotReady')).toMatchObject({ type: 'Warning' });
    const served = senderDomainStatus(facts({ domain: domain({ unsubscribe: { url: 'https://links.example.com' } }, missing.status), records: WITH_DMARC, checks: WITH_DMARC.map((r) => check(r, 'match')), bulkSender: BULK }), later(1000));
    expect(served.events.find((e) => e.reason === 'BulkSenderReady')).toMatchObject({ type: 'Normal', message: expect.stringContaining('FCrDNS for 203.0.113.7 (mail.example.com)') });
    expect(served.status.conditions!.find((c) => c.type === 'BulkSenderReady')).toMatchObject({ status: 'True', observedGeneration: 3, lastTransitionTime: later(1000).toISOString() });
    expect(senderDomainStatus(facts(), t0).status.conditions!.map((c) => c.type)).not.toContain('BulkSenderReady');
  });

  it('comes back at the next DNS check or rotation step, whichever is first, and not within a second', () => {
    const minutes = (n: number) => n * 60_000;
    expect(senderDomainStatus(facts(), t0).requeueAfterMs).toBe(minutes(10));
    expect(senderDomainStatus(facts({ lastCheckedAt: t0.getTime() - minutes(4) }), t0).requeueAfterMs).toBe(minutes(6));
    expect(senderDomainStatus(facts({ nextStepAt: later(minutes(2)) }), t0).requeueAfterMs).toBe(minutes(2));
    expect(senderDomainStatus(facts({ nextStepAt: t0 }), t0).requeueAfterMs).toBe(1000);
    const { status } = senderDomainStatus(facts({ nextStepAt: later(minutes(2)) }), t0);
    expect(status.nextRotationAt).toBe(later(minutes(2)).toISOString());
  });

  it('checks DNS every verification interval, and at once when the records differ from status', () => {
    const shown = domain({}, senderDomainStatus(facts(), t0).status);
    expect(dnsCheckDue(shown, RECORDS, t0.getTime(), later(9 * 60_000))).toBe(false);
    expect(dnsCheckDue(shown, RECORDS, t0.getTime(), later(10 * 60_000))).toBe(true);
    expect(dnsCheckDue(shown, [...RECORDS, record('_dmarc.example.com', 'v=DMARC1; p=none', 'dmarc')], t0.getTime(), later(1000))).toBe(true);
    expect(dnsCheckDue(domain(), RECORDS, t0.getTime(), later(1000))).toBe(true);
  });

  it('lets the rotation switch only to a selector DNS serves: this check, else the last one in status', () => {
    const checks = [check(RECORDS[1]!, 'match'), check(RECORDS[2]!, 'different')];
    const now = servedSelectors(domain(), RECORDS, checks);
    expect([now('mailfleet-1-rsa'), now('mailfleet-1-ed'), now('mailfleet-9-rsa')]).toEqual([true, false, false]);
    const fromStatus = servedSelectors(domain({}, senderDomainStatus(facts({ checks }), t0).status), RECORDS, undefined);
    expect([fromStatus('mailfleet-1-rsa'), fromStatus('mailfleet-1-ed')]).toEqual([true, false]);
  });

  it('carries the records\' warnings (a return path\'s MX record among them) in status.warnings, and none when there are none', () => {
    const mx = 'bounces.example.com needs an MX record naming the public host of the relays\' bounces listener';
    expect(senderDomainStatus(facts({ warnings: [mx] }), t0).status.warnings).toEqual([mx]);
    expect(senderDomainStatus(facts(), t0).status).not.toHaveProperty('warnings');
  });
});
