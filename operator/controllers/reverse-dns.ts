/**
 * The DNS look-ups of forward-confirmed reverse DNS (FCrDNS) for the SenderDomain controller:
 * each egress address's PTR names, and each name's A (or AAAA) addresses, asked of the
 * SenderDomain's own resolvers (spec.verification.resolvers), as its records are. Only the
 * look-ups: ../policy/bulk-sender.ts judges them. A failed query is the answer's error, never
 * a thrown one, so one unreachable name does not hide the others.
 */
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { ReverseLookup } from '../policy/bulk-sender.js';

export interface ReverseOptions {
  /** IP or IP:port ([v6]:port); empty uses the system resolver. */
  servers: string[];
  /** Per query. */
  timeoutMs: number;
}

/** NXDOMAIN and NODATA: the name or its records do not exist (an empty answer, not an error). */
async function query(what: string, ask: () => Promise<string[]>): Promise<string[] | { error: string }> {
  try {
    return await ask();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return [];
    return { error: `${what} failed: ${code ?? (err as Error).message}${code === 'ETIMEOUT' ? ' (no answer in time)' : ''}` };
  }
}

export async function lookupReverse(addresses: readonly string[], opts: ReverseOptions): Promise<ReverseLookup[]> {
  const resolver = new Resolver({ timeout: opts.timeoutMs, tries: 1 });
  try {
    if (opts.servers.length) resolver.setServers(opts.servers);
  } catch (err) {
    const error = `DNS servers ${opts.servers.join(', ')}: ${(err as Error).message}`;
    return addresses.map((address) => ({ address, ptr: { error }, forward: [] }));
  }
  return Promise.all(
    addresses.map(async (address): Promise<ReverseLookup> => {
      const ptr = await query(`PTR query for ${address}`, () => resolver.reverse(address));
      const names = Array.isArray(ptr) ? [...new Set(ptr.map((n) => n.toLowerCase().replace(/\.$/, '')))] : [];
      const v6 = isIP(address) === 6;
      const forward = await Promise.all(names.map(async (name) => ({ name, addresses: await query(`${v6 ? 'AAAA' : 'A'} query for ${name}`, () => (v6 ? resolver.resolve6(name) : resolver.resolve4(name))) })));
      return { address, ptr: Array.isArray(ptr) ? names : ptr, forward };
    }),
  );
}
