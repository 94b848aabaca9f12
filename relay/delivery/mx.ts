/**
 * Where mail for a domain goes: its MX hosts in preference order (RFC 5321 5.1), or the
 * domain itself when it has no MX (implicit MX), with each host's addresses. A null MX
 * (RFC 7505) or a domain that does not exist fails at once; a DNS server failure defers.
 */
import dns from 'node:dns';
import { DeliveryFailure } from './outcome.js';

export interface MxHost {
  name: string;
  preference: number;
  addresses: string[];
}

const NOT_FOUND = new Set<string>([dns.NOTFOUND, dns.NODATA]);

export class MxResolver {
  private readonly resolver: dns.promises.Resolver;

  constructor(servers: string[], timeoutMs = 5000) {
    this.resolver = new dns.promises.Resolver({ timeout: timeoutMs, tries: 2 });
    if (servers.length) this.resolver.setServers(servers);
  }

  /** MX host names in preference order (the domain itself when it has none), without addresses. */
  async mxNames(domain: string): Promise<string[]> {
    let records: { exchange: string; priority: number }[] = [];
    try {
      records = await this.resolver.resolveMx(domain);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== dns.NODATA) throw err;
    }
    return records.length ? [...records].sort((a, b) => a.priority - b.priority).map((r) => r.exchange) : [domain];
  }

  async resolve(domain: string): Promise<MxHost[]> {
    let records: { exchange: string; priority: number }[];
    try {
      records = await this.resolver.resolveMx(domain);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === dns.NODATA) records = [];
      else throw this.failure(domain, 'MX', code);
    }
    if (records.length === 1 && (records[0]!.exchange === '' || records[0]!.exchange === '.')) {
      throw new DeliveryFailure('failed', '5.1.10', `${domain} does not accept mail (null MX, RFC 7505)`);
    }
    // Implicit MX: no MX records means the domain's own address records.
    const hosts = records.length ? [...records].sort((a, b) => a.priority - b.priority) : [{ exchange: domain, priority: 0 }];
    const resolved: MxHost[] = [];
    let lastError: DeliveryFailure | undefined;
    for (const h of hosts) {
      try {
        const addresses = await this.addresses(h.exchange);
        if (addresses.length) resolved.push({ name: h.exchange, preference: h.priority, addresses });
      } catch (err) {
        lastError = err as DeliveryFailure;
      }
    }
    if (!resolved.length) {
      // No MX, and the domain's own name has no address either (or does not exist): nowhere to deliver, for good.
      if (!records.length && (!lastError || lastError.kind === 'failed')) {
        throw new DeliveryFailure('failed', '5.1.2', `${domain} has no MX and no address records`);
      }
      throw lastError ?? new DeliveryFailure('deferred', '4.4.4', `no address found for the MX hosts of ${domain}`);
    }
    return resolved;
  }

  /** IPv4 then IPv6 addresses of a host; none when the name does not exist. Throws DeliveryFailure on a DNS failure. */
  async addresses(name: string): Promise<string[]> {
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(name), this.resolver.resolve6(name)]);
    const out = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    if (out.length) return out;
    const codes = [v4, v6].map((r) => (r.status === 'rejected' ? (r.reason as NodeJS.ErrnoException).code : dns.NODATA));
    if (codes.every((c) => NOT_FOUND.has(c ?? ''))) return [];
    throw this.failure(name, 'A/AAAA', codes.find((c) => !NOT_FOUND.has(c ?? '')));
  }

  /** TXT records of a name, each as its strings (for MTA-STS discovery, which reads the error codes). */
  txt(name: string): Promise<string[][]> {
    return this.resolver.resolveTxt(name);
  }

  private failure(name: string, type: string, code: string | undefined): DeliveryFailure {
    if (code === dns.NOTFOUND) return new DeliveryFailure('failed', '5.1.2', `${name} does not exist (NXDOMAIN on ${type} lookup)`);
    return new DeliveryFailure('deferred', '4.4.3', `DNS lookup of ${type} for ${name} failed (${code ?? 'unknown error'}); will retry`);
  }
}
