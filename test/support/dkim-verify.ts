/**
 * Receivers' views of a signed message, by code nobody here wrote: dkimpy (Debian's
 * python3-dkim) verifies each DKIM-Signature against dnsmasq through dnspython; and the DNS
 * records `mailfleet records` prints for a relay config, to serve from dnsmasq.
 */
import { execFile, spawnSync } from 'node:child_process';
import path from 'node:path';
import { startDnsmasq, type Dnsmasq } from '../peers/dnsmasq.js';
import type { DnsRecord } from '../../relay/records.js';
import { CLI } from './process.js';

export const PYTHON = '/usr/bin/python3';

/** dkimpy's verdict on each DKIM-Signature of the message, with its d=, a=, s= and h= (lower case, no spaces). */
export function dkimpy(raw: Buffer, dnsPort: number): { domain: string; selector: string; algorithm: string; ok: boolean; h: string }[] {
  const script = `
import dkim, dns.resolver, json, sys
r = dns.resolver.Resolver(configure=False)
r.nameservers = ['127.0.0.1']
r.port = ${dnsPort}
def lookup(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return b''.join(r.resolve(name.rstrip('.'), 'TXT')[0].strings)
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [v for (k, v) in dkim.rfc822_parse(msg)[0] if k.lower() == b'dkim-signature']
out = []
for i, sig in enumerate(sigs):
    tags = dkim.util.parse_tag_value(sig)
    try:
        ok = bool(d.verify(idx=i, dnsfunc=lookup))
    except dkim.DKIMException:  # e.g. "body hash mismatch": a verdict, not a crash
        ok = False
    out.append({'domain': tags[b'd'].decode(), 'selector': tags[b's'].decode(), 'algorithm': tags[b'a'].decode(), 'ok': ok, 'h': tags[b'h'].decode().replace(' ', '').lower()})
print(json.dumps(out))`;
  const run = spawnSync(PYTHON, ['-c', script], { input: raw });
  if (run.status !== 0) throw new Error(`dkimpy: ${run.stderr.toString()}`);
  return JSON.parse(run.stdout.toString()) as ReturnType<typeof dkimpy>;
}

export function recordsJson(configFile: string): Promise<DnsRecord[]> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, 'records', '--config', configFile, '--json'], (err, stdout, stderr) => {
      if (err) return reject(new Error(`mailfleet records failed: ${stderr}`));
      resolve((JSON.parse(stdout) as { domains: { records: DnsRecord[] }[] }).domains.flatMap((d) => d.records));
    });
  });
}

/**
 * dnsmasq on `port` with the TXT records `mailfleet records` prints for the relay config in
 * `relayDir`, and mx.receiver.test (127.0.0.1) as the MX of receiver.test: where a relay
 * delivers and where a verifier finds its keys.
 */
export async function serveRecords(relayDir: string, port: number): Promise<Dnsmasq> {
  const records = await recordsJson(path.join(relayDir, 'relay.yaml'));
  return startDnsmasq({
    port,
    mx: [{ domain: 'receiver.test', host: 'mx.receiver.test', preference: 10 }],
    hosts: [{ name: 'mx.receiver.test', address: '127.0.0.1' }],
    txt: records.filter((r) => r.type === 'TXT').map((r) => ({ name: r.name, values: [r.value] })),
  });
}
