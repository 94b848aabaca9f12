import { expect, it } from 'vitest';
import { describePeer } from './availability.js';
import { DNSMASQ_BINARIES, reverseName, startDnsmasq } from './dnsmasq.js';
import { isAlive, run } from './proc.js';
import { useTeardown } from './teardown.js';

const errorCode = (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (err: NodeJS.ErrnoException) => err.code,
  );

// A 4096-bit-DKIM-sized value: longer than one TXT string (255) and than a dnsmasq config
// line (~1000); with the characters that dnsmasq's --txt-record would mangle.
const longValue = `v=DKIM1; k=rsa; n="a,b\\c"; p=${'A'.repeat(1100)}`;

describePeer('dnsmasq', [...DNSMASQ_BINARIES, 'dig'], () => {
  const defer = useTeardown();

  it('serves MX, A, TXT and null MX under .test, NXDOMAIN for unknown names, REFUSED elsewhere', async () => {
    const dns = await startDnsmasq({
      mx: [
        { domain: 'example.test', host: 'mx1.example.test', preference: 10 },
        { domain: 'example.test', host: 'mx2.example.test', preference: 20 },
      ],
      hosts: [
        { name: 'mx1.example.test', address: '127.0.0.2' },
        { name: 'mx2.example.test', address: '127.0.0.3' },
      ],
      txt: [
        { name: 'sel._domainkey.example.test', values: [longValue] },
        { name: 'example.test', values: ['v=spf1 ip4:127.0.0.0/8 -all', 'other=1', ''] },
      ],
      nullMx: ['nomail.test'],
    });
    defer(dns.stop);
    const r = dns.resolver();

    const mx = await r.resolveMx('example.test');
    // Node 22+ adds a `type` field: compare what every version returns.
    expect(mx.map(({ exchange, priority }) => ({ exchange, priority })).sort((a, b) => a.priority - b.priority)).toEqual([
      { exchange: 'mx1.example.test', priority: 10 },
      { exchange: 'mx2.example.test', priority: 20 },
    ]);
    expect(await r.resolve4('mx2.example.test')).toEqual(['127.0.0.3']);

    const dkim = await r.resolveTxt('sel._domainkey.example.test');
    expect(dkim).toHaveLength(1);
    expect(dkim[0]?.join('')).toBe(longValue);
    expect(dkim[0]?.map((s) => s.length)).toEqual([255, 255, 255, 255, longValue.length - 4 * 255]);
    expect((await r.resolveTxt('example.test')).map((t) => t.join('')).sort()).toEqual(['', 'other=1', 'v=spf1 ip4:127.0.0.0/8 -all']);

    // RFC 7505 null MX: Node shows the root name "." as an empty exchange; dig shows "0 .".
    expect((await r.resolveMx('nomail.test')).map(({ exchange, priority }) => ({ exchange, priority }))).toEqual([{ exchange: '', priority: 0 }]);
    const dig = await run('dig', ['+short', '-p', String(dns.port), '@127.0.0.1', 'MX', 'nomail.test']);
    expect(dig.stdout.trim()).toBe('0 .');

    expect(await errorCode(r.resolve4('no-such-host.test'))).toBe('ENOTFOUND'); // NXDOMAIN
    expect(await errorCode(r.resolveMx('mx1.example.test'))).toBe('ENODATA'); // name exists, no MX
    expect(await errorCode(r.resolveMx('example.com'))).toBe('EREFUSED'); // nothing leaves loopback
    const nx = await run('dig', ['-p', String(dns.port), '@127.0.0.1', 'A', 'no-such-host.test']);
    expect(nx.stdout).toContain('status: NXDOMAIN');
  });

  it('serves PTR records: its own, those of host records, and NXDOMAIN for an address without one (IPv4 and IPv6)', async () => {
    expect(reverseName('203.0.113.7')).toBe('7.113.0.203.in-addr.arpa');
    expect(reverseName('2001:db8::7')).toBe(`7.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.ip6.arpa`);
    const dns = await startDnsmasq({
      hosts: [
        { name: 'mail.example.test', address: '203.0.113.7' },
        { name: 'other.example.test', address: '203.0.113.8' },
        { name: 'v6.example.test', address: '2001:db8::7' },
      ],
      ptr: [
        { address: '203.0.113.8', name: 'elsewhere.example.test' },
        { address: '203.0.113.9', name: 'mail.example.test' },
        { address: '2001:db8::9', name: 'v6.example.test' },
      ],
    });
    defer(dns.stop);
    const r = dns.resolver();
    expect(await r.reverse('203.0.113.7')).toEqual(['mail.example.test']); // the host record's own
    expect(await r.reverse('203.0.113.8')).toEqual(['elsewhere.example.test']); // ptr takes the host record's place
    expect(await r.reverse('203.0.113.9')).toEqual(['mail.example.test']);
    expect(await r.reverse('2001:db8::7')).toEqual(['v6.example.test']);
    expect(await r.reverse('2001:db8::9')).toEqual(['v6.example.test']);
    expect(await errorCode(r.reverse('203.0.113.10'))).toBe('ENOTFOUND'); // NXDOMAIN, as a reverse zone answers
    const dig = await run('dig', ['+short', '-p', String(dns.port), '@127.0.0.1', '-x', '203.0.113.8']);
    expect(dig.stdout.trim()).toBe('elsewhere.example.test.');
  });

  it('stops by PID; two servers run side by side', async () => {
    const a = await startDnsmasq({ hosts: [{ name: 'a.test', address: '127.0.0.10' }] });
    defer(a.stop);
    const b = await startDnsmasq({ hosts: [{ name: 'a.test', address: '127.0.0.11' }] });
    defer(b.stop);
    expect(await a.resolver().resolve4('a.test')).toEqual(['127.0.0.10']);
    expect(await b.resolver().resolve4('a.test')).toEqual(['127.0.0.11']);
    await a.stop();
    expect(isAlive(a.pid)).toBe(false);
    expect(await errorCode(a.resolver().resolve4('a.test'))).toMatch(/ECONNREFUSED|ETIMEOUT/);
  });
});
