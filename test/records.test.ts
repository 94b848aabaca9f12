/** The records verifier and `mailfleet records` (as a process) against a real DNS server. */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { senderDomainSchema } from '../relay/config.js';
import { generateDkimKey } from '../relay/dkim-keys.js';
import { verifyRecords, type RecordCheck } from '../relay/records-verify.js';
import { formatZoneRecord, recordsFor, type DnsRecord, type RelayFacts } from '../relay/records.js';
import { describePeer } from './peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq, type DnsmasqOptions } from './peers/dnsmasq.js';
import { useTeardown } from './peers/teardown.js';
import { CLI } from './support/process.js';

const MX: RelayFacts = { route: 'mx', egressAddresses: ['203.0.113.7'] };

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailfleet-records-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** `mailfleet records ...` with stdout and stderr apart (--json output must parse). */
function records(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'records', ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr });
    });
  });
}

const served = (recs: DnsRecord[]): NonNullable<DnsmasqOptions['txt']> => recs.map((r) => ({ name: r.name, values: [r.value] }));

function checkOf(checks: RecordCheck[], name: string): RecordCheck {
  const check = checks.find((c) => c.record.name === name);
  if (!check) throw new Error(`no check for ${name}`);
  return check;
}

function writeConfig(name: string, config: unknown): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, YAML.stringify(config));
  return file;
}

describe('mailfleet records without DNS', () => {
  it('explains a DKIM key file it cannot read, naming it, and exits 2', async () => {
    const config = writeConfig('missing-key.yaml', {
      spool: { dir: 'spool' },
      listeners: [{ name: 'dev', port: 2525, tls: 'none', auth: 'none' }],
      senderDomains: [{ domain: 'example.test', dkim: { keys: [{ selector: 'mf1', privateKeyFile: 'keys/absent.pem' }] } }],
      delivery: { route: { type: 'mx' } },
    });
    const { code, stderr } = await records(['--config', config]);
    expect(code).toBe(2);
    expect(stderr).toContain(`MF_DKIM_KEY_UNREADABLE: cannot read DKIM key file ${path.join(dir, 'keys/absent.pem')} (selector mf1)`);
  });

  it('prints zone-file lines with long values in 255-byte strings, and warnings as comments', async () => {
    const key = generateDkimKey('rsa-sha256');
    const keyFile = path.join(dir, 'zone.pem');
    fs.writeFileSync(keyFile, key.privateKeyPem);
    const config = writeConfig('zone.yaml', {
      spool: { dir: 'spool' },
      listeners: [{ name: 'dev', port: 2525, tls: 'none', auth: 'none' }],
      senderDomains: [{ domain: 'example.test', dkim: { keys: [{ selector: 'mf1', privateKeyFile: keyFile }] } }],
      delivery: { route: { type: 'smarthost', host: 'smtp.sendgrid.net' } },
    });
    const { code, stdout } = await records(['--config', config, '--zone']);
    expect(code).toBe(0);
    const dkimValue = `v=DKIM1; k=rsa; p=${key.publicKey}`;
    expect(stdout.split('\n')).toEqual([
      '; example.test',
      'example.test. 3600 IN TXT "v=spf1 include:sendgrid.net ~all"',
      `mf1._domainkey.example.test. 3600 IN TXT "${dkimValue.slice(0, 255)}" "${dkimValue.slice(255)}"`,
      '_dmarc.example.test. 3600 IN TXT "v=DMARC1; p=none; adkim=r; aspf=r"',
      expect.stringMatching(/^; warning: the DMARC record for example\.test has no rua/),
      '',
    ]);
  });

  it('refuses a bad option with the usage text, exit 2', async () => {
    const { code, stderr } = await records(['--zone', '--verify']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/mailfleet records: --zone prints only the records: use --verify with the table or --json\nusage: mailfleet records \[--config FILE\]/);
  });
});

describePeer('records against DNS (dnsmasq)', DNSMASQ_BINARIES, () => {
  const defer = useTeardown();

  it('verifyRecords: match, different naming the tag, missing, and DNS errors', async () => {
    const current = generateDkimKey('rsa-sha256');
    const older = generateDkimKey('rsa-sha256');
    const example = recordsFor(
      senderDomainSchema.parse({
        domain: 'example.test',
        spf: { include: ['spf1.partner.test'] },
        mtaSts: { mode: 'enforce', mx: ['mx.example.test'] },
        tlsRpt: { rua: ['mailto:tls@example.test'] },
      }),
      MX,
      [{ selector: 'mf1', algorithm: 'rsa-sha256', publicKey: current.publicKey }],
    ).records;
    const other = recordsFor(senderDomainSchema.parse({ domain: 'other.test', spf: { include: ['nospf.partner.test'] } }), MX, []).records;
    const outside = recordsFor(senderDomainSchema.parse({ domain: 'example.com' }), MX, []).records.filter((r) => r.purpose === 'dmarc');
    const byPurpose = (recs: DnsRecord[], purpose: DnsRecord['purpose']) => recs.find((r) => r.purpose === purpose)!;

    const dns = await startDnsmasq({
      txt: [
        // What the relay recommends, beside an unrelated TXT record at the same name.
        { name: 'example.test', values: [byPurpose(example, 'spf').value, 'google-site-verification=abc'] },
        { name: 'spf1.partner.test', values: ['v=spf1 include:spf2.partner.test a -all'] },
        { name: 'spf2.partner.test', values: ['v=spf1 ip4:192.0.2.0/24 -all'] },
        // The key before a rotation.
        { name: 'mf1._domainkey.example.test', values: [`v=DKIM1; k=rsa; p=${older.publicKey}`] },
        // No _dmarc.example.test.
        { name: '_mta-sts.example.test', values: ['v=STSv1; id=20240101'] },
        // Same tags, other order and spacing.
        { name: '_smtp._tls.example.test', values: ['rua=mailto:tls@example.test ;v=TLSRPTv1'] },
        { name: 'other.test', values: [byPurpose(other, 'spf').value, 'v=spf1 include:amazonses.com ~all'] },
        // Tags at their defaults (sp, pct, adkim, aspf) must not count as differences; p and fo do.
        { name: '_dmarc.other.test', values: ['v=DMARC1; p=quarantine; fo=1'] },
      ],
    });
    defer(dns.stop);

    const links = recordsFor({ ...senderDomainSchema.parse({ domain: 'links.test' }), linkHosts: ['t.links.test', 'u.links.test', 'v.links.test'] }, { ...MX, linksHost: 'ingress.example.net' }, []).records.filter((r) => r.purpose === 'links');
    const cnames = await startDnsmasq({
      hosts: [{ name: 'ingress.example.net', address: '192.0.2.80' }, { name: 'elsewhere.example.net', address: '192.0.2.81' }],
      cname: [{ name: 't.links.test', target: 'ingress.example.net' }, { name: 'u.links.test', target: 'elsewhere.example.net' }],
    });
    defer(cnames.stop);
    const linkChecks = await verifyRecords(links, { servers: [cnames.server], timeoutMs: 2000 });
    expect(linkChecks.map((c) => [c.record.name, c.status, c.difference ?? ''])).toEqual([
      ['t.links.test', 'match', ''],
      ['u.links.test', 'different', 'CNAME elsewhere.example.net, not ingress.example.net: the links in mail go elsewhere'],
      ['v.links.test', 'missing', ''],
    ]);

    const checks = await verifyRecords([...example, ...other, ...outside], { servers: [dns.server], timeoutMs: 2000 });

    const spf = checkOf(checks, 'example.test');
    expect(spf).toMatchObject({ status: 'match', served: expect.arrayContaining(['google-site-verification=abc']) });
    // include:spf1 (1) + include:spf2 inside it (1) + its a (1).
    expect(spf.spf).toEqual({ lookups: 3, exact: true, problems: [] });

    expect(checkOf(checks, 'mf1._domainkey.example.test')).toMatchObject({ status: 'different', difference: 'p= differs (DNS has an older key?)' });
    expect(checkOf(checks, '_dmarc.example.test')).toMatchObject({ status: 'missing', served: [] });
    expect(checkOf(checks, '_mta-sts.example.test').difference).toMatch(/^id= differs: DNS has 20240101, expected [0-9a-f]+ \(the policy changed/);
    expect(checkOf(checks, '_smtp._tls.example.test').status).toBe('match');

    const twoSpf = checkOf(checks, 'other.test');
    expect(twoSpf.status).toBe('different');
    expect(twoSpf.difference).toMatch(/^2 SPF records at other\.test: receivers treat more than one as an error \(permerror/);
    expect(twoSpf.spf?.problems).toEqual(['include:nospf.partner.test: nospf.partner.test has no SPF record, so receivers return permerror']);
    expect(checkOf(checks, '_dmarc.other.test')).toMatchObject({ status: 'different', difference: 'p= differs: DNS has quarantine, expected none; DNS has extra tag fo=1' });

    // dnsmasq refuses names outside .test: a server failure, not a missing record.
    expect(checkOf(checks, '_dmarc.example.com')).toMatchObject({ status: 'error', error: 'TXT query for _dmarc.example.com failed: EREFUSED' });
  });

  it("verifyRecords: a return path's MX, matched by its host; another host is a difference; none is missing", async () => {
    const withMx = (domain: string) => recordsFor(senderDomainSchema.parse({ domain, returnPath: `bounces.${domain}` }), { ...MX, bouncesMxHost: 'bounces-mx.fleet.test' }, []).records;
    const [good, wrong, none] = ['good.test', 'wrong.test', 'none.test'].map((d) => withMx(d).find((r) => r.type === 'MX')!);
    expect(good).toMatchObject({ name: 'bounces.good.test', type: 'MX', value: '10 bounces-mx.fleet.test', purpose: 'mx' });
    expect(formatZoneRecord(good!)).toBe('bounces.good.test. 3600 IN MX 10 bounces-mx.fleet.test.');
    const dns = await startDnsmasq({
      mx: [
        // A second, lower-preference host beside ours is fine.
        { domain: 'bounces.good.test', host: 'bounces-mx.fleet.test', preference: 10 },
        { domain: 'bounces.good.test', host: 'backup.good.test', preference: 20 },
        { domain: 'bounces.wrong.test', host: 'mail.wrong.test', preference: 10 },
      ],
    });
    defer(dns.stop);
    const checks = await verifyRecords([good!, wrong!, none!], { servers: [dns.server], timeoutMs: 2000 });
    expect(checks[0]).toMatchObject({ status: 'match' });
    expect(checks[0]!.served.sort()).toEqual(['10 bounces-mx.fleet.test', '20 backup.good.test']);
    expect(checks[1]).toMatchObject({ status: 'different', difference: 'MX 10 mail.wrong.test; none names bounces-mx.fleet.test, so bounces and complaints go elsewhere' });
    expect(checks[2]).toMatchObject({ status: 'missing' });
  });

  describe('mailfleet records --verify', () => {
    const keyFile = path.join(dir, 'mf1.pem');
    fs.writeFileSync(keyFile, generateDkimKey('rsa-sha256').privateKeyPem);
    const config = (dnsServers: string[]) =>
      writeConfig(`relay-${dnsServers.length}.yaml`, {
        spool: { dir: 'spool' },
        listeners: [{ name: 'dev', port: 2525, tls: 'none', auth: 'none' }],
        senderDomains: [
          {
            domain: 'example.test',
            dkim: { keys: [{ selector: 'mf1', privateKeyFile: keyFile }] },
            dmarc: { policy: 'quarantine', rua: ['mailto:dmarc@example.test'] },
            tlsRpt: { rua: ['mailto:tls@example.test'] },
          },
          { domain: 'other.test', dmarc: { rua: ['mailto:dmarc@example.test'] } },
        ],
        delivery: { route: { type: 'mx', dnsServers }, egressAddresses: ['203.0.113.7'] },
      });

    async function printedRecords(file: string): Promise<DnsRecord[]> {
      const { code, stdout } = await records(['--config', file, '--json']);
      expect(code).toBe(0);
      return (JSON.parse(stdout) as { domains: { records: DnsRecord[] }[] }).domains.flatMap((d) => d.records);
    }

    it('shows each record with its DNS state and exits 1 when one is missing', async () => {
      const file = config([]);
      const printed = await printedRecords(file);
      expect(printed.map((r) => r.name)).toEqual(['example.test', 'mf1._domainkey.example.test', '_dmarc.example.test', '_smtp._tls.example.test', 'other.test', '_dmarc.other.test']);
      const dns = await startDnsmasq({ txt: served(printed.filter((r) => r.name !== '_dmarc.example.test')) });
      defer(dns.stop);

      const { code, stdout } = await records(['--config', file, '--verify', '--dns-server', dns.server]);
      expect(code).toBe(1);
      expect(stdout).toMatch(/^example\.test\n {2}NAME +TYPE +PURPOSE +DNS +VALUE\n/);
      expect(stdout).toMatch(/\n {2}example\.test +TXT +spf +match +v=spf1 ip4:203\.0\.113\.7 ~all\n/);
      expect(stdout).toMatch(/\n {2}mf1\._domainkey\.example\.test +TXT +dkim +match +v=DKIM1; k=rsa; p=MII/);
      expect(stdout).toMatch(/\n {2}_dmarc\.example\.test +TXT +dmarc +MISSING +v=DMARC1; p=quarantine; rua=mailto:dmarc@example\.test; adkim=r; aspf=r\n/);
      expect(stdout).toMatch(/\nother\.test\n {2}NAME +TYPE +PURPOSE +DNS +VALUE\n {2}other\.test +TXT +spf +match +v=spf1 ip4:203\.0\.113\.7 ~all\n/);
      expect(stdout).toMatch(/\nDNS: 5 match, 1 missing\n$/);
    });

    it('exits 0 when DNS serves exactly what --json printed, asking the mx route\'s dnsServers', async () => {
      const printed = await printedRecords(config([]));
      const dns = await startDnsmasq({ txt: served(printed) });
      defer(dns.stop);

      const file = config([dns.server]);
      const table = await records(['--config', file, '--verify']);
      expect(table.stdout).toMatch(/\nDNS: 6 match \(all records published\)\n$/);
      expect(table.code).toBe(0);

      const json = await records(['--config', file, '--verify', '--json']);
      expect(json.code).toBe(0);
      const checked = (JSON.parse(json.stdout) as { domains: { records: (DnsRecord & { dns: { status: string } })[] }[] }).domains.flatMap((d) => d.records);
      expect(checked.map((r) => [r.name, r.dns.status])).toEqual(printed.map((r) => [r.name, 'match']));
    });
  });
});
