import { describe, expect, it } from 'vitest';
import { CONDITIONS } from '../controllers/reasons.js';
import { bulkSenderReadiness, canonicalAddress, egressToCheck, type BulkSenderFacts, type BulkSenderRecord, type BulkSenderRelay, type ReverseLookup } from './bulk-sender.js';

const RECORDS: BulkSenderRecord[] = [
  { name: 'example.com', purpose: 'spf', dns: 'match' },
  { name: 'bounces.example.com', purpose: 'spf', dns: 'match' },
  { name: 'mailfleet-1-rsa._domainkey.example.com', purpose: 'dkim', selector: 'mailfleet-1-rsa', dns: 'match' },
  { name: 'mailfleet-1-ed._domainkey.example.com', purpose: 'dkim', selector: 'mailfleet-1-ed', dns: 'match' },
  { name: 'mailfleet-2-rsa._domainkey.example.com', purpose: 'dkim', selector: 'mailfleet-2-rsa', dns: 'missing' },
  { name: '_dmarc.example.com', purpose: 'dmarc', dns: 'match' },
  { name: '_mta-sts.example.com', purpose: 'mta-sts', dns: 'missing' },
];
const RELAY: BulkSenderRelay = { name: 'out', route: 'mx', egressAddresses: ['203.0.113.7', '2001:db8::7/128'] };
const CONFIRMED: ReverseLookup[] = [
  { address: '203.0.113.7', ptr: ['mail.example.com'], forward: [{ name: 'mail.example.com', addresses: ['203.0.113.7'] }] },
  { address: '2001:db8::7', ptr: ['mail6.example.com'], forward: [{ name: 'mail6.example.com', addresses: ['2001:0db8:0:0::7'] }] },
];

function facts(over: Partial<BulkSenderFacts> = {}): BulkSenderFacts {
  return { domain: 'example.com', records: RECORDS, activeSelectors: ['mailfleet-1-rsa', 'mailfleet-1-ed'], unsubscribe: true, relays: [RELAY], reverse: CONFIRMED, ...over };
}
const withRecord = (name: string, change: Partial<BulkSenderRecord>) => RECORDS.map((r) => (r.name === name ? { ...r, ...change } : r));
const withLookup = (address: string, look: Partial<ReverseLookup>) => CONFIRMED.map((l) => (l.address === address ? { ...l, ...look } : l));

describe('bulkSenderReadiness', () => {
  it('every check passes: True, naming each address and the host its PTR names (a record of a key not signing yet, and MTA-STS, do not count)', () => {
    expect(bulkSenderReadiness(facts())).toEqual({
      status: 'True',
      reason: 'RequirementsMet',
      message: 'example.com meets the bulk sender requirements of Gmail, Yahoo and Outlook.com: SPF, DKIM and DMARC served; FCrDNS for 2001:db8::7 (mail6.example.com), 203.0.113.7 (mail.example.com); one-click unsubscribe; TLS to the next hop',
    });
  });

  const CASES: { name: string; facts: BulkSenderFacts; message: string }[] = [
    { name: 'SPF missing at the return path', facts: facts({ records: withRecord('bounces.example.com', { dns: 'missing' }) }), message: 'SPF: no record at bounces.example.com (publish the record in status.records)' },
    {
      name: 'SPF different',
      facts: facts({ records: withRecord('example.com', { dns: 'different', difference: 'DNS lacks ip4:203.0.113.7' }) }),
      message: 'SPF: example.com is not the record status.records recommends: DNS lacks ip4:203.0.113.7 (publish the recommended record, or change spec to what you publish)',
    },
    { name: 'DKIM of an active key missing', facts: facts({ records: withRecord('mailfleet-1-ed._domainkey.example.com', { dns: 'missing' }) }), message: 'DKIM: no record at mailfleet-1-ed._domainkey.example.com (publish the record in status.records)' },
    { name: 'no key signs yet', facts: facts({ activeSelectors: [] }), message: 'DKIM: no key signs yet (wait for KeysReady)' },
    { name: 'DMARC missing', facts: facts({ records: withRecord('_dmarc.example.com', { dns: 'missing' }) }), message: 'DMARC: no record at _dmarc.example.com (publish the record in status.records)' },
    {
      name: 'DMARC query failed',
      facts: facts({ records: withRecord('_dmarc.example.com', { dns: 'error', difference: 'TXT query for _dmarc.example.com failed: ETIMEOUT (no answer in time)' }) }),
      message: 'DMARC: the query for _dmarc.example.com failed: TXT query for _dmarc.example.com failed: ETIMEOUT (no answer in time) (check spec.verification.resolvers; it is checked again every verification.interval)',
    },
    { name: 'DMARC not checked yet', facts: facts({ records: withRecord('_dmarc.example.com', { dns: 'unknown' }) }), message: "DMARC: _dmarc.example.com has not been checked yet (wait for the operator's first DNS check)" },
    { name: 'no PTR', facts: facts({ reverse: withLookup('203.0.113.7', { ptr: [], forward: [] }) }), message: 'FCrDNS: 203.0.113.7 has no PTR record (ask your provider to set one naming a host whose A record is 203.0.113.7)' },
    {
      name: 'the PTR names a host with another address',
      facts: facts({ reverse: withLookup('203.0.113.7', { ptr: ['elsewhere.example.com'], forward: [{ name: 'elsewhere.example.com', addresses: ['198.51.100.1'] }] }) }),
      message: 'FCrDNS: the PTR of 203.0.113.7 names elsewhere.example.com, but elsewhere.example.com resolves to 198.51.100.1 (give elsewhere.example.com the A record 203.0.113.7, or ask your provider to point the PTR at a host that has it)',
    },
    {
      name: 'the PTR names a host without AAAA',
      facts: facts({ reverse: withLookup('2001:db8::7', { forward: [{ name: 'mail6.example.com', addresses: [] }] }) }),
      message: 'FCrDNS: the PTR of 2001:db8::7 names mail6.example.com, but mail6.example.com resolves to nothing (give mail6.example.com the AAAA record 2001:db8::7, or ask your provider to point the PTR at a host that has it)',
    },
    { name: 'the PTR query failed', facts: facts({ reverse: withLookup('203.0.113.7', { ptr: { error: 'PTR query for 203.0.113.7 failed: ESERVFAIL' } }) }), message: 'FCrDNS: the PTR query for 203.0.113.7 failed: PTR query for 203.0.113.7 failed: ESERVFAIL (check spec.verification.resolvers)' },
    {
      name: 'no egress addresses',
      facts: facts({ relays: [{ ...RELAY, egressAddresses: [] }] }),
      message: 'FCrDNS: MailRelay out has no spec.delivery.egressAddresses (set the public addresses its mail leaves from, after NAT: they cannot be seen from inside the cluster)',
    },
    { name: 'a range', facts: facts({ relays: [{ ...RELAY, egressAddresses: ['203.0.113.7', '198.51.100.0/28'] }] }), message: 'FCrDNS: 198.51.100.0/28 of MailRelay out is a range, not an address (list the addresses mail leaves from one by one, so each one\'s PTR can be checked)' },
    { name: 'not looked up yet', facts: facts({ reverse: undefined }), message: "FCrDNS: 2001:db8::7, 203.0.113.7 not looked up yet (wait for the operator's next DNS check)" },
    { name: 'no MailRelay selects it', facts: facts({ relays: [] }), message: "MailRelay: none selects this SenderDomain, so none sends its mail (set a MailRelay's spec.senderDomainSelector to match its labels)" },
    { name: 'no unsubscribe', facts: facts({ unsubscribe: false }), message: "one-click unsubscribe: spec.unsubscribe is not set (set spec.unsubscribe.url to the public https origin of the relays' links endpoint: docs/operator.md#one-click-unsubscribe)" },
    {
      name: 'a smarthost in plain text',
      facts: facts({ relays: [RELAY, { name: 'via-ses', route: 'smarthost', smarthost: { host: 'smtp.example.net', tls: 'none' }, egressAddresses: [] }] }),
      message: 'TLS: MailRelay via-ses sends to smarthost smtp.example.net in plain text (set spec.delivery.smarthost.tls to starttls or implicit)',
    },
  ];
  for (const c of CASES) {
    it(`fails naming the check and what to do: ${c.name}`, () => {
      expect(bulkSenderReadiness(c.facts)).toEqual({ status: 'False', reason: 'RequirementsNotMet', message: c.message });
    });
  }

  it('names every failing check, in order, in one message', () => {
    const verdict = bulkSenderReadiness(facts({ records: withRecord('_dmarc.example.com', { dns: 'missing' }), reverse: withLookup('203.0.113.7', { ptr: [], forward: [] }), unsubscribe: false }));
    expect(verdict.message.split('; ').map((p) => p.split(':')[0])).toEqual(['DMARC', 'FCrDNS', 'one-click unsubscribe']);
  });

  it('through a smarthost over TLS, FCrDNS is the smarthost\'s: no egress addresses needed', () => {
    const ses: BulkSenderRelay = { name: 'via-ses', route: 'smarthost', smarthost: { host: 'email-smtp.eu-west-1.amazonaws.com', tls: 'starttls' }, egressAddresses: [] };
    expect(egressToCheck([ses])).toEqual([]);
    expect(bulkSenderReadiness(facts({ relays: [ses], reverse: [] }))).toMatchObject({ status: 'True', message: expect.stringContaining('FCrDNS left to smarthost email-smtp.eu-west-1.amazonaws.com') });
  });

  it('looks up each single address once, in one spelling, of the relays that deliver to the MX', () => {
    expect(egressToCheck([RELAY, { name: 'b', route: 'mx', egressAddresses: ['203.0.113.7/32', '2001:DB8:0::7', '198.51.100.0/28'] }])).toEqual(['2001:db8::7', '203.0.113.7']);
    expect(canonicalAddress('2001:0db8:0000::0007')).toBe('2001:db8::7');
    expect(canonicalAddress('198.51.100.0/28')).toBe('198.51.100.0/28');
  });

  it('gives only the reasons CONDITIONS lists for BulkSenderReady', () => {
    expect(CONDITIONS.SenderDomain.BulkSenderReady?.reasons).toEqual(['RequirementsMet', 'RequirementsNotMet']);
  });
});
