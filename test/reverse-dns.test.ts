/** The FCrDNS look-ups of BulkSenderReady (operator/controllers/reverse-dns.ts) against a real DNS server, judged by the policy. */
import { expect, it } from 'vitest';
import { lookupReverse } from '../operator/controllers/reverse-dns.js';
import { bulkSenderReadiness } from '../operator/policy/bulk-sender.js';
import { describePeer } from './peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq } from './peers/dnsmasq.js';
import { useTeardown } from './peers/teardown.js';

describePeer('FCrDNS look-ups against dnsmasq', DNSMASQ_BINARIES, () => {
  const defer = useTeardown();

  it('PTR names and their A or AAAA addresses; no PTR is an empty answer; a refused query is an error, not a throw', async () => {
    const dns = await startDnsmasq({
      hosts: [
        { name: 'mail.example.test', address: '203.0.113.7' },
        { name: 'mail6.example.test', address: '2001:db8::7' },
      ],
      ptr: [{ address: '203.0.113.8', name: 'mail.example.com' }],
    });
    defer(dns.stop);
    const lookups = await lookupReverse(['203.0.113.7', '2001:db8::7', '203.0.113.8', '203.0.113.9'], { servers: [dns.server], timeoutMs: 1000 });
    expect(lookups).toEqual([
      { address: '203.0.113.7', ptr: ['mail.example.test'], forward: [{ name: 'mail.example.test', addresses: ['203.0.113.7'] }] },
      { address: '2001:db8::7', ptr: ['mail6.example.test'], forward: [{ name: 'mail6.example.test', addresses: ['2001:db8::7'] }] },
      // dnsmasq refuses names outside .test, as an unreachable server would fail.
      { address: '203.0.113.8', ptr: ['mail.example.com'], forward: [{ name: 'mail.example.com', addresses: { error: 'A query for mail.example.com failed: EREFUSED' } }] },
      { address: '203.0.113.9', ptr: [], forward: [] },
    ]);
    const relays = [{ name: 'out', route: 'mx' as const, egressAddresses: ['203.0.113.7', '2001:db8::7', '203.0.113.8', '203.0.113.9'] }];
    const verdict = bulkSenderReadiness({ domain: 'example.test', records: [], activeSelectors: ['s'], unsubscribe: true, relays, reverse: lookups });
    expect(verdict.message).toContain('FCrDNS: the PTR of 203.0.113.8 names mail.example.com, but the query for mail.example.com failed: A query for mail.example.com failed: EREFUSED');
    expect(verdict.message).toContain('FCrDNS: 203.0.113.9 has no PTR record');
    expect(verdict.message).not.toContain('203.0.113.7 ');

    const unreachable = await lookupReverse(['203.0.113.7'], { servers: ['not-an-address'], timeoutMs: 1000 });
    expect(unreachable[0]!.ptr).toMatchObject({ error: expect.stringContaining('DNS servers not-an-address') });
  });
});
