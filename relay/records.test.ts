import { describe, expect, it } from 'vitest';
import { senderDomainSchema, type SenderDomainConfig } from './config.js';
import { generateDkimKey } from './dkim-keys.js';
import { formatZoneRecord, recordsFor, splitTxtValue, type DnsRecord, type RelayFacts } from './records.js';

/** A sender domain with the config's defaults, as `mailfleet records` sees it. */
function domain(spec: Record<string, unknown> = {}): SenderDomainConfig {
  return senderDomainSchema.parse({ domain: 'example.test', ...spec });
}

const MX: RelayFacts = { route: 'mx', egressAddresses: ['203.0.113.7'] };
const smarthost = (host: string): RelayFacts => ({ route: 'smarthost', smarthostHost: host, egressAddresses: [] });

function record(records: DnsRecord[], purpose: DnsRecord['purpose']): DnsRecord {
  const found = records.find((r) => r.purpose === purpose);
  if (!found) throw new Error(`no ${purpose} record in ${JSON.stringify(records)}`);
  return found;
}

const spfOf = (spec: Record<string, unknown>, facts: RelayFacts) => {
  const result = recordsFor(domain(spec), facts, []);
  return { value: record(result.records, 'spf').value, warnings: result.warnings };
};

describe('splitTxtValue and formatZoneRecord', () => {
  it('splits a 2048-bit RSA DKIM record into strings of at most 255 bytes that join back to the value', () => {
    const key = generateDkimKey('rsa-sha256');
    const dkim = record(recordsFor(domain(), MX, [{ selector: 'mf1', algorithm: 'rsa-sha256', publicKey: key.publicKey }]).records, 'dkim');
    expect(dkim.value.length).toBeGreaterThan(255);
    expect(dkim.strings.length).toBe(2);
    for (const s of dkim.strings) expect(Buffer.byteLength(s)).toBeLessThanOrEqual(255);
    expect(dkim.strings[0]).toHaveLength(255);
    expect(dkim.strings.join('')).toBe(dkim.value);
  });

  it('counts bytes, not characters, and never splits a character', () => {
    const value = 'é'.repeat(200); // 400 bytes
    const strings = splitTxtValue(value);
    expect(strings.map((s) => Buffer.byteLength(s))).toEqual([254, 146]);
    expect(strings.join('')).toBe(value);
    expect(splitTxtValue('')).toEqual(['']);
  });

  it('formats zone-file lines with one quoted string per part, quotes and backslashes escaped', () => {
    const prefix = 'v=DKIM1; n="a\\b"; p=';
    const value = `${prefix}${'A'.repeat(300)}`;
    const line = formatZoneRecord({ name: 'mf1._domainkey.example.test', type: 'TXT', value, strings: splitTxtValue(value), purpose: 'dkim' }, 300);
    const firstAs = 255 - prefix.length;
    expect(line).toBe(`mf1._domainkey.example.test. 300 IN TXT "v=DKIM1; n=\\"a\\\\b\\"; p=${'A'.repeat(firstAs)}" "${'A'.repeat(300 - firstAs)}"`);
  });
});

describe('SPF', () => {
  it('names the egress addresses of the mx route as ip4:/ip6:, then the configured ranges and includes', () => {
    const { value, warnings } = spfOf(
      { spf: { include: ['spf.partner.test'], ipRanges: ['198.51.100.0/24'], all: '-all' } },
      { route: 'mx', egressAddresses: ['203.0.113.7', '2001:db8::/64'] },
    );
    expect(value).toBe('v=spf1 ip4:203.0.113.7 ip6:2001:db8::/64 ip4:198.51.100.0/24 include:spf.partner.test -all');
    expect(warnings.filter((w) => /SPF record/.test(w))).toEqual([]);
  });

  it('warns that the mx route without egressAddresses cannot name the relay', () => {
    const { value, warnings } = spfOf({}, { route: 'mx', egressAddresses: [] });
    expect(value).toBe('v=spf1 ~all');
    expect(warnings).toContainEqual(expect.stringMatching(/mx route has no delivery\.egressAddresses.*cannot name the relay's addresses/));
  });

  it.each([
    ['email-smtp.eu-west-1.amazonaws.com', 'amazonses.com'],
    ['email-smtp.us-east-1.amazonaws.com', 'amazonses.com'],
    ['smtp.sendgrid.net', 'sendgrid.net'],
    ['smtp.mailgun.org', 'mailgun.org'],
    ['smtp.eu.mailgun.org', 'mailgun.org'],
    ['smtp.office365.com', 'spf.protection.outlook.com'],
    ['smtp-relay.gmail.com', '_spf.google.com'],
    ['smtp.gmail.com', '_spf.google.com'],
    ['SMTP.PostmarkApp.com', 'spf.mtasvc.net'],
  ])('smarthost %s gets include:%s', (host, include) => {
    const { value, warnings } = spfOf({}, smarthost(host));
    expect(value).toBe(`v=spf1 include:${include} ~all`);
    expect(warnings.filter((w) => /smarthost/.test(w))).toEqual([]);
  });

  it('tells the user to add the include of an unknown smarthost, and names none itself', () => {
    const { value, warnings } = spfOf({}, smarthost('mail.smtp2go.com'));
    expect(value).toBe('v=spf1 ~all');
    expect(warnings).toContainEqual(expect.stringMatching(/does not know the SPF include of smarthost mail\.smtp2go\.com: add the include .* to spf\.include of example\.test/));
  });

  it('does not repeat an include the route already adds', () => {
    expect(spfOf({ spf: { include: ['amazonses.com'] } }, smarthost('email-smtp.eu-west-1.amazonaws.com')).value).toBe('v=spf1 include:amazonses.com ~all');
  });

  it('notes the lookups it needs, counting what known provider includes nest', () => {
    // spf.include cannot name _spf.google.com: config.ts's domainName refuses underscores.
    const spf = record(recordsFor(domain({ spf: { include: ['spf.protection.outlook.com'] } }), smarthost('smtp.gmail.com'), []).records, 'spf');
    expect(spf.note).toBe('5 of 10 DNS lookups');
  });

  it('warns past 10 DNS lookups (RFC 7208 §4.6.4), as "at least" when an include is unknown', () => {
    const includes = (n: number) => Array.from({ length: n }, (_, i) => `spf${i}.partner.test`);
    // Google's include costs 3: 7 more make 10, the limit itself.
    expect(spfOf({ spf: { include: includes(7) } }, smarthost('smtp.gmail.com')).warnings.filter((w) => /lookups/.test(w))).toEqual([]);
    const { warnings } = spfOf({ spf: { include: includes(8) } }, smarthost('smtp.gmail.com'));
    expect(warnings).toContainEqual(expect.stringMatching(/SPF record for example\.test needs at least 11 DNS lookups, more than the 10 RFC 7208 allows/));
  });
});

describe('DKIM', () => {
  it('publishes each key at SELECTOR._domainkey.DOMAIN with its key type', () => {
    const rsa = generateDkimKey('rsa-sha256');
    const ed = generateDkimKey('ed25519-sha256');
    const { records } = recordsFor(domain(), MX, [
      { selector: 'rsa1', algorithm: 'rsa-sha256', publicKey: rsa.publicKey },
      { selector: 'ed1', algorithm: 'ed25519-sha256', publicKey: ed.publicKey },
    ]);
    const dkim = records.filter((r) => r.purpose === 'dkim');
    expect(dkim.map((r) => [r.name, r.selector, r.value])).toEqual([
      ['rsa1._domainkey.example.test', 'rsa1', `v=DKIM1; k=rsa; p=${rsa.publicKey}`],
      ['ed1._domainkey.example.test', 'ed1', `v=DKIM1; k=ed25519; p=${ed.publicKey}`],
    ]);
    expect(/p=(\S+)$/.exec(dkim[1]!.value)?.[1]).toHaveLength(44);
    expect(dkim[1]!.strings).toEqual([dkim[1]!.value]);
  });

  it('warns when a domain has no keys, or only Ed25519 keys that many receivers cannot verify', () => {
    expect(recordsFor(domain(), MX, []).warnings).toContainEqual(expect.stringMatching(/example\.test has no DKIM keys: its mail goes out unsigned/));
    const ed = { selector: 'ed1', algorithm: 'ed25519-sha256' as const, publicKey: generateDkimKey('ed25519-sha256').publicKey };
    const rsa = { selector: 'rsa1', algorithm: 'rsa-sha256' as const, publicKey: generateDkimKey('rsa-sha256').publicKey };
    expect(recordsFor(domain(), MX, [ed]).warnings).toContainEqual(expect.stringMatching(/only Ed25519 DKIM keys: add an RSA key too/));
    expect(recordsFor(domain(), MX, [ed, rsa]).warnings.filter((w) => /DKIM/.test(w))).toEqual([]);
  });
});

describe('DMARC', () => {
  it('writes every configured tag: p, sp, rua, pct, strict alignment', () => {
    const dmarc = record(
      recordsFor(
        domain({ dmarc: { policy: 'reject', subdomainPolicy: 'quarantine', rua: ['mailto:dmarc@example.test', 'mailto:copy@reports.example.test'], pct: 25, alignment: 'strict' } }),
        MX,
        [],
      ).records,
      'dmarc',
    );
    expect(dmarc.name).toBe('_dmarc.example.test');
    expect(dmarc.value).toBe('v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.test,mailto:copy@reports.example.test; pct=25; adkim=s; aspf=s');
  });

  it('leaves out sp and pct=100 by default, and warns that without rua there are no reports', () => {
    const result = recordsFor(domain(), MX, []);
    expect(record(result.records, 'dmarc').value).toBe('v=DMARC1; p=none; adkim=r; aspf=r');
    expect(result.warnings).toContainEqual(expect.stringMatching(/DMARC record for example\.test has no rua/));
  });

  it('warns that a report address outside the domain needs its authorization record (RFC 7489 §7.1)', () => {
    const { warnings } = recordsFor(domain({ dmarc: { rua: ['mailto:x@dmarc.vendor.test'] } }), MX, []);
    expect(warnings).toContainEqual(expect.stringContaining('dmarc.vendor.test must publish example.test._report._dmarc.dmarc.vendor.test TXT "v=DMARC1"'));
  });
});

describe('MTA-STS and TLS-RPT', () => {
  const mtaSts = (spec: Record<string, unknown>) => recordsFor(domain({ mtaSts: spec }), MX, []);

  it('publishes _mta-sts TXT and the policy file for https://mta-sts.DOMAIN/.well-known/mta-sts.txt', () => {
    const result = mtaSts({ mode: 'enforce', mx: ['mx1.example.test', '*.mx.example.test'], maxAge: '1d' });
    const txt = record(result.records, 'mta-sts');
    expect(txt.name).toBe('_mta-sts.example.test');
    expect(txt.value).toMatch(/^v=STSv1; id=[A-Za-z0-9]{1,32}$/);
    expect(txt.note).toMatch(/mta-sts\.example\.test must serve the policy .* over HTTPS with a certificate valid for that name/);
    expect(result.policies).toEqual([
      {
        url: 'https://mta-sts.example.test/.well-known/mta-sts.txt',
        content: 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.mx.example.test\r\nmax_age: 86400\r\n',
      },
    ]);
  });

  it('changes the id exactly when the policy changes', () => {
    const id = (spec: Record<string, unknown>) => record(mtaSts(spec).records, 'mta-sts').value;
    const base = { mode: 'testing', mx: ['mx1.example.test'], maxAge: 604800 };
    expect(id(base)).toBe(id({ ...base }));
    expect(id({ ...base, maxAge: '7d' })).toBe(id(base));
    expect(id({ ...base, mode: 'enforce' })).not.toBe(id(base));
    expect(id({ ...base, mx: ['mx1.example.test', 'mx2.example.test'] })).not.toBe(id(base));
    expect(id({ ...base, maxAge: 86400 })).not.toBe(id(base));
  });

  it('publishes no MTA-STS or TLS-RPT unless configured', () => {
    const result = recordsFor(domain(), MX, []);
    expect(result.records.map((r) => r.purpose)).toEqual(['spf', 'dmarc']);
    expect(result.policies).toEqual([]);
  });

  it('publishes TLS-RPT at _smtp._tls with every rua', () => {
    const tls = record(recordsFor(domain({ tlsRpt: { rua: ['mailto:tls@example.test', 'https://reports.example.test/tls'] } }), MX, []).records, 'tls-rpt');
    expect([tls.name, tls.value]).toEqual(['_smtp._tls.example.test', 'v=TLSRPTv1; rua=mailto:tls@example.test,https://reports.example.test/tls']);
  });
});

describe('the link hosts (unsubscribe, tracking)', () => {
  it('under the domain get a CNAME to the links endpoint, with a zone line; without its host, a warning; a host of another zone, nothing', () => {
    const withHost = recordsFor({ ...domain(), linkHosts: ['t.example.test', 'links.shared.test'] }, { ...MX, linksHost: 'ingress.example.net' }, []);
    const cname = withHost.records.filter((r) => r.purpose === 'links');
    expect(cname.map((r) => [r.name, r.type, r.value])).toEqual([['t.example.test', 'CNAME', 'ingress.example.net']]);
    expect(formatZoneRecord(cname[0]!)).toBe('t.example.test. 3600 IN CNAME ingress.example.net.');
    const without = recordsFor({ ...domain(), linkHosts: ['t.example.test'] }, MX, []);
    expect(without.records.filter((r) => r.purpose === 'links')).toEqual([]);
    expect(without.warnings.join('\n')).toMatch(/t\.example\.test must reach the relays' links endpoint .*set links\.publicHost/);
    expect(recordsFor({ ...domain(), linkHosts: ['example.test'] }, { ...MX, linksHost: 'ingress.example.net' }, []).warnings.join('\n')).toMatch(/example\.test is the sender domain itself: a link host needs a name of its own/);
  });
});

describe('a return path', () => {
  it('gets the SPF record of its sender domain (receivers check SPF against the envelope sender), and a warning that it needs an MX', () => {
    const result = recordsFor(domain({ returnPath: 'bounces.example.test' }), MX, []);
    const spf = result.records.filter((r) => r.purpose === 'spf');
    expect(spf.map((r) => r.name)).toEqual(['example.test', 'bounces.example.test']);
    expect(spf[1]!.value).toBe(spf[0]!.value);
    expect(result.warnings.join('\n')).toMatch(/bounces\.example\.test needs an MX record naming the public host of the relays' bounces listener/);
  });

  it('that is the sender domain itself adds no second SPF record (its own is checked), only the MX warning', () => {
    const result = recordsFor(domain({ returnPath: 'example.test' }), MX, []);
    expect(result.records.filter((r) => r.purpose === 'spf').map((r) => r.name)).toEqual(['example.test']);
    expect(result.warnings.join('\n')).toMatch(/example\.test needs an MX record/);
  });
});
