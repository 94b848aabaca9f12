import { Resolver } from 'node:dns/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { binary } from './availability.js';
import { freePort } from './ports.js';
import { spawnPeer, type Peer } from './proc.js';

export const DNSMASQ_BINARIES = ['/usr/sbin/dnsmasq'];

export interface DnsmasqOptions {
  /** UDP and TCP port on 127.0.0.1 (default: a free port). */
  port?: number;
  mx?: { domain: string; host: string; preference: number }[];
  /** A or AAAA records. */
  hosts?: { name: string; address: string }[];
  /** One TXT record per entry of `values`; long values become several strings of <= 255 bytes. */
  txt?: { name: string; values: string[] }[];
  /** Domains with a null MX (RFC 7505: "MX 0 ."). */
  nullMx?: string[];
  /**
   * PTR records: the reverse name of `address` (in-addr.arpa or ip6.arpa) names `name`. Each
   * entry of `hosts` also gets a PTR of its own from dnsmasq; one here for the same address
   * takes its place (so a PTR can point elsewhere than the A record's name).
   */
  ptr?: { address: string; name: string }[];
  /** CNAME records; dnsmasq answers one only when its target is a name it knows (give the target in `hosts`). */
  cname?: { name: string; target: string }[];
}

export interface Dnsmasq {
  port: number;
  /** For Resolver.setServers() and the relay's DNS setting. */
  server: string;
  pid: number;
  /** A Resolver that asks only this server (1 s timeout, no retries). */
  resolver(): Resolver;
  /** dnsmasq's log (it logs to stderr in the foreground). */
  output(): string;
  stop(): Promise<void>;
}

/** The reverse name of an IPv4 or IPv6 address: 7.113.0.203.in-addr.arpa, or the ip6.arpa nibbles. */
export function reverseName(address: string): string {
  if (isIPv4(address)) return `${address.split('.').reverse().join('.')}.in-addr.arpa`;
  if (!isIPv6(address)) throw new Error(`dnsmasq peer: ${JSON.stringify(address)} is not an IP address`);
  const [head = '', tail = ''] = address.split('::');
  const groups = (part: string) => (part ? part.split(':') : []);
  const missing = 8 - groups(head).length - groups(tail).length;
  const full = [...groups(head), ...Array<string>(address.includes('::') ? missing : 0).fill('0'), ...groups(tail)];
  return `${[...full.map((g) => g.padStart(4, '0')).join('')].reverse().join('.')}.ip6.arpa`;
}

function checkName(name: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`dnsmasq peer: bad DNS name ${JSON.stringify(name)}`);
  return name;
}

/**
 * TXT RDATA for one record as hex: the value's bytes in strings of at most 255, each with its
 * length byte. Served with --dns-rr, so any byte (quote, comma, backslash) arrives unchanged.
 */
export function txtRdataHex(value: string): string {
  const bytes = Buffer.from(value, 'utf8');
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length || i === 0; i += 255) {
    const chunk = bytes.subarray(i, i + 255);
    parts.push(Buffer.from([chunk.length]), chunk);
  }
  return Buffer.concat(parts).toString('hex');
}

// Records go on the command line, not in a config file: dnsmasq rejects config lines longer
// than about 1,000 characters ("missing \""). TXT records use --dns-rr (type 16, raw RDATA):
// --txt-record only strips quotes in config files, and on the command line every comma
// starts a new string.
function dnsmasqArgs(port: number, opts: DnsmasqOptions): string[] {
  const args = [
    '--conf-file=/dev/null', // not /etc/dnsmasq.conf
    '--no-resolv',
    '--no-hosts',
    '--keep-in-foreground',
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    `--port=${port}`,
    // Unknown names under .test answer NXDOMAIN; other names get REFUSED: nothing leaves.
    '--local=/test/',
    // Unknown reverse names answer NXDOMAIN too, as a provider's reverse zone does for an address without a PTR.
    '--local=/in-addr.arpa/',
    '--local=/ip6.arpa/',
    '--pid-file=', // no pid file: we hold the PID, and parallel instances must not share one
    '--log-facility=-',
  ];
  for (const mx of opts.mx ?? []) args.push(`--mx-host=${checkName(mx.domain)},${checkName(mx.host)},${mx.preference}`);
  // dnsmasq takes "." as the root name, so this serves "MX 0 ." (seen with dig and Node).
  for (const domain of opts.nullMx ?? []) args.push(`--mx-host=${checkName(domain)},.,0`);
  for (const h of opts.hosts ?? []) args.push(`--host-record=${checkName(h.name)},${h.address}`);
  for (const p of opts.ptr ?? []) args.push(`--ptr-record=${reverseName(p.address)},${checkName(p.name)}`);
  for (const c of opts.cname ?? []) args.push(`--cname=${checkName(c.name)},${checkName(c.target)}`);
  for (const t of opts.txt ?? []) for (const v of t.values) args.push(`--dns-rr=${checkName(t.name)},16,${txtRdataHex(v)}`);
  return args;
}

function makeResolver(port: number): Resolver {
  const r = new Resolver({ timeout: 1000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  return r;
}

/** Resolves once dnsmasq answers: NXDOMAIN for a probe name counts as an answer. */
async function waitForAnswers(peer: Peer, port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  const r = makeResolver(port);
  while (Date.now() < deadline) {
    if (!peer.running()) throw new Error(`dnsmasq exited: ${peer.output()}`);
    try {
      await r.resolve4('readiness-probe.test');
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOTFOUND') return;
    }
    await new Promise((res) => setTimeout(res, 25));
  }
  throw new Error(`dnsmasq did not answer on 127.0.0.1:${port}: ${peer.output()}`);
}

/** A dnsmasq authoritative-only server on 127.0.0.1 for MX/A/TXT records under .test, and PTR records. */
export async function startDnsmasq(opts: DnsmasqOptions = {}): Promise<Dnsmasq> {
  // freePort checks TCP only; if the UDP port is taken, dnsmasq exits and we try another.
  for (let tries = 0; ; tries++) {
    const port = opts.port ?? (await freePort());
    const peer = spawnPeer(binary('/usr/sbin/dnsmasq'), dnsmasqArgs(port, opts));
    try {
      await waitForAnswers(peer, port);
    } catch (err) {
      await peer.stop();
      if (opts.port === undefined && tries < 3 && /in use/i.test(peer.output())) continue;
      throw err;
    }
    return {
      port,
      server: `127.0.0.1:${port}`,
      pid: peer.pid,
      resolver: () => makeResolver(port),
      output: peer.output,
      stop: () => peer.stop(),
    };
  }
}
