/**
 * MTA-STS (RFC 8461) for outbound mail: a recipient domain announces a policy with its
 * `_mta-sts` TXT record and serves it at https://mta-sts.DOMAIN/.well-known/mta-sts.txt; the
 * policy is cached for its max_age. mailauth reads the TXT record, parses the policy and
 * matches MX names; the HTTPS fetch is ours, because mailauth's always uses port 443 and
 * Node's default CAs. The cache lives in memory only: after a restart policies are fetched again.
 */
import https from 'node:https';
import { parsePolicy, resolvePolicy, validateMx } from 'mailauth/lib/mta-sts.js';
import type { Logger } from 'pino';
import type { MxResolver } from './mx.js';

export interface MtaStsPolicy {
  domain: string;
  /** `id` of the TXT record the policy was fetched under: a new id announces a new policy. */
  id: string;
  mode: 'enforce' | 'testing' | 'none';
  /** MX host patterns: host names, or `*.example.net` for one label under example.net. */
  mx: string[];
  /** Seconds the policy may be cached (max_age). */
  maxAge: number;
  /** When the policy stops applying unless fetched again (ms since the epoch). */
  expiresAt: number;
}

export interface MtaStsCacheOptions {
  /** The route's resolver, so discovery and the policy host's address use its DNS servers. */
  dns: Pick<MxResolver, 'txt' | 'addresses'>;
  /** HTTPS port of mta-sts.DOMAIN: 443 except in tests. */
  port: number;
  /** CAs trusted for the policy host's certificate (PEM); omitted: Node's default store. */
  ca?: string[];
  log: Pick<Logger, 'warn'>;
  now?: () => number;
}

const POLICY_PATH = '/.well-known/mta-sts.txt';
const MAX_POLICY_BYTES = 64 * 1024;
/** A policy fetch holds up the first delivery to its domain: keep the wait short. */
const FETCH_TIMEOUT_MS = 10_000;
/** After a failed fetch the same policy id waits this long before the next try (RFC 8461 §3.3 allows rate limits). */
const FETCH_RETRY_MS = 5 * 60_000;
/** Past this many domains, entries with nothing left to apply are dropped. */
const MAX_DOMAINS = 10_000;

interface Entry {
  policy?: MtaStsPolicy;
  /** A policy id whose fetch failed, and when it may be tried again. */
  failed?: { id: string; retryAt: number };
}

export class MtaStsCache {
  private readonly entries = new Map<string, Entry>();
  /** One lookup per domain at a time: connections opened together share it. */
  private readonly lookups = new Map<string, Promise<MtaStsPolicy | undefined>>();
  private readonly now: () => number;

  constructor(private readonly options: MtaStsCacheOptions) {
    this.now = options.now ?? Date.now;
  }

  /**
   * The policy that applies to mail for `domain` now; undefined when it has none or none can be
   * had. Never throws: an unexpired cached policy keeps applying whenever no new one can be
   * fetched (RFC 8461 §3.3, §5.1), and without one mail goes as if the domain had no policy.
   */
  policyFor(domain: string): Promise<MtaStsPolicy | undefined> {
    const key = domain.toLowerCase();
    let lookup = this.lookups.get(key);
    if (!lookup) {
      lookup = this.lookup(key).finally(() => this.lookups.delete(key));
      this.lookups.set(key, lookup);
    }
    return lookup;
  }

  private async lookup(domain: string): Promise<MtaStsPolicy | undefined> {
    const entry = this.entries.get(domain);
    const cached = entry?.policy && entry.policy.expiresAt > this.now() ? entry.policy : undefined;
    let id: string | false;
    try {
      id = await resolvePolicy(domain, { resolver: (name) => this.options.dns.txt(name) });
    } catch {
      // A DNS failure, or several STSv1 records (RFC 8461 §3.1): no live policy to discover.
      return cached;
    }
    // Without a TXT record a cached policy still applies: a domain retires its policy by
    // publishing mode none and waiting out max_age, not by deleting the record (RFC 8461 §8.3).
    if (!id || id === cached?.id) return cached;
    if (entry?.failed?.id === id && entry.failed.retryAt > this.now()) return cached;
    try {
      const policy = await this.fetch(domain, id);
      this.remember(domain, { policy });
      return policy;
    } catch (err) {
      const message = (err as Error).message;
      const outcome = cached ? `keeping the cached policy (mode ${cached.mode}) until ${new Date(cached.expiresAt).toISOString()}` : 'delivering as if the domain had none';
      this.options.log.warn({ event: 'mta-sts-fetch-failed', domain, policyId: id, error: message }, `MTA-STS policy of ${domain} could not be fetched (${message}); ${outcome}`);
      this.remember(domain, { policy: cached, failed: { id, retryAt: this.now() + FETCH_RETRY_MS } });
      return cached;
    }
  }

  private async fetch(domain: string, id: string): Promise<MtaStsPolicy> {
    const host = `mta-sts.${domain}`;
    const addresses = await this.options.dns.addresses(host);
    if (!addresses.length) throw new Error(`${host} has no address record`);
    let text: string | undefined;
    let lastError: Error | undefined;
    for (const address of addresses) {
      try {
        text = await fetchPolicyText({ host, address, port: this.options.port, ca: this.options.ca, timeoutMs: FETCH_TIMEOUT_MS });
        break;
      } catch (err) {
        lastError = err as Error;
      }
    }
    if (text === undefined) throw lastError!;
    let parsed: ReturnType<typeof parsePolicy>;
    try {
      parsed = parsePolicy(text);
    } catch (err) {
      throw new Error(`the policy at https://${host}${POLICY_PATH} is invalid: ${(err as Error).message}`);
    }
    // parsePolicy has checked that max_age is a number of seconds.
    const maxAge = Number(parsed.maxAge);
    return { domain, id, mode: parsed.mode, mx: parsed.mx ?? [], maxAge, expiresAt: this.now() + maxAge * 1000 };
  }

  private remember(domain: string, entry: Entry): void {
    if (this.entries.size >= MAX_DOMAINS && !this.entries.has(domain)) {
      const now = this.now();
      for (const [d, e] of this.entries) if (!(e.policy && e.policy.expiresAt > now)) this.entries.delete(d);
    }
    this.entries.set(domain, entry);
  }
}

/**
 * Whether a policy lets mail go to an MX host (RFC 8461 §4.1); always true in mode none.
 * mailauth's validateMx lets `*.example.net` match at any depth, where the RFC's wildcard
 * stands for exactly one label, so each pattern is checked on its own and the depth here.
 */
export function mxAllowed(policy: Pick<MtaStsPolicy, 'mode' | 'mx'>, mxHost: string): boolean {
  if (policy.mode === 'none') return true;
  const host = mxHost.toLowerCase().replace(/\.$/, '');
  return policy.mx.some((pattern) => {
    const { valid, match } = validateMx(host, { mode: policy.mode, mx: [pattern] });
    return valid && !(match?.startsWith('.') && host.slice(0, -match.length).includes('.'));
  });
}

export interface PolicyRequest {
  /** mta-sts.DOMAIN: the SNI name and the name the certificate must be valid for. */
  host: string;
  /** Where to connect (resolved through the route's DNS servers). */
  address: string;
  port: number;
  ca?: string[];
  timeoutMs: number;
}

/**
 * GETs a policy file as RFC 8461 §3.3 asks: over HTTPS with a certificate valid for the
 * policy host, no redirect followed, only a 200 with text/plain accepted, at most 64 KiB read.
 */
export function fetchPolicyText(req: PolicyRequest): Promise<string> {
  const authority = req.port === 443 ? req.host : `${req.host}:${req.port}`;
  const url = `https://${authority}${POLICY_PATH}`;
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined, text?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        request.destroy();
        reject(new Error(`${url}: ${err.message}`));
      } else resolve(text ?? '');
    };
    const timer = setTimeout(() => finish(new Error(`no complete answer within ${req.timeoutMs} ms`)), req.timeoutMs);
    const request = https.get(
      { host: req.address, port: req.port, path: POLICY_PATH, servername: req.host, headers: { host: authority }, ca: req.ca, agent: false, minVersion: 'TLSv1.2' },
      (res) => {
        if (res.statusCode !== 200) {
          const redirect = res.headers.location ? ` redirecting to ${res.headers.location} (redirects are not followed)` : '';
          return finish(new Error(`HTTP ${res.statusCode}${redirect}, not 200`));
        }
        const type = res.headers['content-type']?.split(';')[0]?.trim().toLowerCase();
        if (type !== 'text/plain') return finish(new Error(`Content-Type ${type ?? '(none)'}, not text/plain`));
        const tooLarge = () => finish(new Error(`the policy is larger than ${MAX_POLICY_BYTES / 1024} KiB`));
        if (Number(res.headers['content-length']) > MAX_POLICY_BYTES) return tooLarge();
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_POLICY_BYTES) tooLarge();
          else chunks.push(chunk);
        });
        res.on('end', () => finish(undefined, Buffer.concat(chunks).toString('utf8')));
        res.on('error', finish);
      },
    );
    request.on('error', finish);
  });
}
