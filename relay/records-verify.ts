/**
 * Compares the records `recordsFor` recommends with what DNS serves now, the way receivers read
 * them: TXT strings joined, SPF as a set of terms, DKIM/DMARC/TLS-RPT/MTA-STS as tag lists; a
 * return path's MX by its host.
 *
 * A failed query (SERVFAIL, timeout, refused) is status 'error' with the reason, not a thrown
 * error, so one unreachable name does not hide the state of the others.
 */
import { Resolver } from 'node:dns/promises';
import { ErrorCodes, MailfleetError } from './errors.js';
import { SPF_LOOKUP_LIMIT, type DnsRecord, type RecordPurpose } from './records.js';

export type VerifyStatus = 'match' | 'missing' | 'different' | 'error';

export interface SpfLookupCount {
  /** DNS lookups a receiver makes evaluating the record, includes expanded through DNS. */
  lookups: number;
  /** False when some include could not be followed: `lookups` is then a lower bound. */
  exact: boolean;
  /** Includes that break evaluation (no SPF record there, loops, failed queries). */
  problems: string[];
}

export interface RecordCheck {
  record: DnsRecord;
  status: VerifyStatus;
  /** Every TXT value at the record's name, strings joined. */
  served: string[];
  /** With 'different': what differs, for a person. */
  difference?: string;
  /** With 'error': why DNS gave no answer. */
  error?: string;
  /** For SPF records: the recommended record's lookups counted through DNS. */
  spf?: SpfLookupCount;
}

export interface VerifyOptions {
  /** IP or IP:port ([v6]:port); empty uses the system resolver. */
  servers: string[];
  /** Per query. */
  timeoutMs: number;
}

type TxtAnswer = { values: string[] } | { error: string };

const SPF_RECORD = /^\s*v=spf1(\s|$)/i;

/** Queries each record's name for TXT and compares; rejects only when a server address is invalid. */
export async function verifyRecords(records: DnsRecord[], opts: VerifyOptions): Promise<RecordCheck[]> {
  const resolver = createResolver(opts);
  const lookup = (name: string): Promise<TxtAnswer> => queryTxt(resolver, name);
  return Promise.all(
    records.map(async (record) => {
      if (record.type === 'MX') return verifyMx(resolver, record);
      if (record.type === 'CNAME') return verifyCname(resolver, record);
      const answer = await lookup(record.name);
      const check = 'error' in answer ? { record, status: 'error' as const, served: [], error: answer.error } : compare(record, answer.values);
      return record.purpose === 'spf' ? { ...check, spf: await countSpfLookups(record.value, lookup) } : check;
    }),
  );
}

function createResolver(opts: VerifyOptions): Resolver {
  const resolver = new Resolver({ timeout: opts.timeoutMs, tries: 1 });
  if (opts.servers.length === 0) return resolver;
  try {
    resolver.setServers(opts.servers);
  } catch (err) {
    throw new MailfleetError(
      ErrorCodes.CONFIG_INVALID,
      `DNS servers ${opts.servers.join(', ')}: ${(err as Error).message}`,
      'give each DNS server as an IP address, optionally with a port: 10.0.0.10, 127.0.0.1:5353, [2001:db8::53]:53',
    );
  }
  return resolver;
}

async function queryTxt(resolver: Resolver, name: string): Promise<TxtAnswer> {
  try {
    return { values: (await resolver.resolveTxt(name)).map((strings) => strings.join('')) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // NXDOMAIN and NODATA: the name or its TXT records do not exist.
    if (code === 'ENOTFOUND' || code === 'ENODATA') return { values: [] };
    return { error: `TXT query for ${name} failed: ${code ?? (err as Error).message}${code === 'ETIMEOUT' ? ' (no answer in time)' : ''}` };
  }
}

/** An MX record matches when the name has an MX naming the recommended host (other, lower-preference hosts may stand beside it). */
async function verifyMx(resolver: Resolver, record: DnsRecord): Promise<RecordCheck> {
  const host = record.value.split(/\s+/)[1]!.toLowerCase();
  let served: string[];
  try {
    served = (await resolver.resolveMx(record.name)).map((mx) => `${mx.priority} ${mx.exchange}`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return { record, status: 'missing', served: [] };
    return { record, status: 'error', served: [], error: `MX query for ${record.name} failed: ${code ?? (err as Error).message}` };
  }
  if (!served.length) return { record, status: 'missing', served };
  if (served.some((mx) => mx.split(' ')[1]!.toLowerCase().replace(/\.$/, '') === host)) return { record, status: 'match', served };
  return { record, status: 'different', served, difference: `MX ${served.join(', ')}; none names ${host}, so bounces and complaints go elsewhere` };
}

/** A CNAME record matches when the name is an alias of the recommended host. */
async function verifyCname(resolver: Resolver, record: DnsRecord): Promise<RecordCheck> {
  let served: string[];
  try {
    served = (await resolver.resolveCname(record.name)).map((h) => h.toLowerCase().replace(/\.$/, ''));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return { record, status: 'missing', served: [] };
    return { record, status: 'error', served: [], error: `CNAME query for ${record.name} failed: ${code ?? (err as Error).message}` };
  }
  if (served.includes(record.value.toLowerCase())) return { record, status: 'match', served };
  return { record, status: 'different', served, difference: `CNAME ${served.join(', ')}, not ${record.value}: the links in mail go elsewhere` };
}

function compare(record: DnsRecord, served: string[]): RecordCheck {
  const result = (status: VerifyStatus, difference?: string): RecordCheck => ({ record, status, served, ...(difference ? { difference } : {}) });
  const candidates = served.filter((value) => isRecordOfKind(record, value));
  if (candidates.length === 0) return result('missing');
  if (candidates.length > 1) {
    return result('different', `${candidates.length} ${record.purpose.toUpperCase()} records at ${record.name}: ${MULTIPLE_RECORDS[record.purpose]}; keep only the recommended one`);
  }
  const difference = record.purpose === 'spf' ? spfDifference(record.value, candidates[0]!) : tagDifference(record.purpose, record.value, candidates[0]!);
  return difference ? result('different', difference) : result('match');
}

const MULTIPLE_RECORDS: Record<RecordPurpose, string> = {
  spf: 'receivers treat more than one as an error (permerror, RFC 7208 §4.5)',
  dkim: 'verifiers may pick either key',
  dmarc: 'receivers then apply no DMARC policy (RFC 7489 §6.6.3)',
  'mta-sts': 'senders then assume no policy (RFC 8461 §3.1)',
  'tls-rpt': 'senders then send no reports (RFC 8460 §3)',
  mx: 'servers may pick any of them',
  links: 'a name has one CNAME and nothing else (RFC 1034 §3.6.2)',
};

/** Whether a TXT value is a record of the same kind (other TXT records share names). */
function isRecordOfKind(record: DnsRecord, value: string): boolean {
  if (record.purpose === 'spf') return SPF_RECORD.test(value);
  const version = parseTags(value).get('v');
  // DKIM's v= is optional (RFC 6376 §3.6.1); the other kinds always carry theirs.
  if (record.purpose === 'dkim' && version === undefined) return true;
  return version?.toLowerCase() === parseTags(record.value).get('v')?.toLowerCase();
}

const ALL = /^[+?~-]?all$/i;

function spfTerms(value: string): string[] {
  return value.trim().toLowerCase().split(/\s+/).slice(1);
}

function spfDifference(expected: string, served: string): string | undefined {
  const want = spfTerms(expected);
  const have = spfTerms(served);
  const lacking = want.filter((t) => !have.includes(t) && !ALL.test(t));
  const extra = have.filter((t) => !want.includes(t) && !ALL.test(t));
  const differences: string[] = [];
  if (lacking.length > 0) differences.push(`DNS lacks ${lacking.join(' ')}`);
  if (extra.length > 0) differences.push(`DNS has extra ${extra.join(' ')}`);
  const wantAll = want.find((t) => ALL.test(t));
  const haveAll = have.find((t) => ALL.test(t));
  if (wantAll !== haveAll) differences.push(`DNS ends with ${haveAll ?? 'no all'}, expected ${wantAll ?? 'no all'}`);
  return differences.length > 0 ? differences.join('; ') : undefined;
}

/** A `tag=value; tag=value` record as a map; whitespace around tags and values dropped. */
function parseTags(value: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of value.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    tags.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return tags;
}

// What an absent tag means, so "adkim=r" and no adkim compare equal.
const TAG_DEFAULTS: Partial<Record<RecordPurpose, Record<string, (tags: Map<string, string>) => string | undefined>>> = {
  dkim: { v: () => 'DKIM1', k: () => 'rsa' },
  dmarc: { pct: () => '100', adkim: () => 'r', aspf: () => 'r', sp: (tags) => tags.get('p') },
};
// Tags holding lists, compared as sets.
const LIST_TAGS = new Set(['rua', 'ruf']);
// Values compared exactly; the rest (keywords and URIs) ignore case.
const CASE_SENSITIVE: Partial<Record<RecordPurpose, string[]>> = { dkim: ['p'], 'mta-sts': ['id'] };

function normalizedValue(purpose: RecordPurpose, tag: string, value: string): string {
  // DKIM allows folding whitespace inside the base64 of p=.
  let v = tag === 'p' && purpose === 'dkim' ? value.replace(/\s+/g, '') : value;
  if (LIST_TAGS.has(tag)) v = v.split(',').map((item) => item.trim()).sort().join(',');
  return CASE_SENSITIVE[purpose]?.includes(tag) ? v : v.toLowerCase();
}

function tagDifference(purpose: RecordPurpose, expected: string, served: string): string | undefined {
  const want = parseTags(expected);
  const have = parseTags(served);
  const defaults = TAG_DEFAULTS[purpose] ?? {};
  const differences: string[] = [];
  // A tag neither side names has its default on both: only explicit tags can differ.
  for (const tag of new Set([...want.keys(), ...have.keys()])) {
    const w = want.get(tag) ?? defaults[tag]?.(want);
    const h = have.get(tag) ?? defaults[tag]?.(have);
    if (w === undefined) differences.push(`DNS has extra tag ${tag}=${h ?? ''}`);
    else if (h === undefined) differences.push(`DNS lacks ${tag}=${w}`);
    else if (normalizedValue(purpose, tag, w) !== normalizedValue(purpose, tag, h)) differences.push(describeTagDifference(purpose, tag, w, h));
  }
  return differences.length > 0 ? differences.join('; ') : undefined;
}

function describeTagDifference(purpose: RecordPurpose, tag: string, expected: string, served: string): string {
  if (purpose === 'dkim' && tag === 'p') return served === '' ? 'p= is empty in DNS (the key is revoked)' : 'p= differs (DNS has an older key?)';
  if (purpose === 'mta-sts' && tag === 'id') return `id= differs: DNS has ${served}, expected ${expected} (the policy changed: publish the new policy file, then this id)`;
  return `${tag}= differs: DNS has ${served}, expected ${expected}`;
}

/**
 * Counts the DNS lookups (RFC 7208 §4.6.4: include, a, mx, ptr, exists, redirect) evaluating
 * `spf` costs a receiver, following includes and redirects through `lookup`.
 */
async function countSpfLookups(spf: string, lookup: (name: string) => Promise<TxtAnswer>): Promise<SpfLookupCount> {
  const problems: string[] = [];
  const visiting = new Set<string>();
  let lookups = 0;
  let exact = true;
  const follow = async (value: string): Promise<void> => {
    for (const term of spfTerms(value)) {
      const target = /^[+?~-]?include:(.+)$/.exec(term)?.[1] ?? /^redirect=(.+)$/.exec(term)?.[1];
      if (target === undefined) {
        if (/^[+?~-]?(a|mx|ptr|exists)([:/]|$)/.test(term)) lookups += 1;
        continue;
      }
      lookups += 1;
      // Past the limit a receiver has already given up; macros depend on the message.
      if (lookups > SPF_LOOKUP_LIMIT || target.includes('%')) {
        exact = false;
        continue;
      }
      if (visiting.has(target)) {
        problems.push(`${target} includes itself (a loop: permerror)`);
        continue;
      }
      const answer = await lookup(target);
      if ('error' in answer) {
        problems.push(`cannot count ${term}: ${answer.error}`);
        exact = false;
        continue;
      }
      const nested = answer.values.filter((v) => SPF_RECORD.test(v));
      if (nested.length !== 1) {
        problems.push(`${term}: ${target} has ${nested.length === 0 ? 'no SPF record' : `${nested.length} SPF records`}, so receivers return permerror`);
        continue;
      }
      visiting.add(target);
      await follow(nested[0]!);
      visiting.delete(target);
    }
  };
  await follow(spf);
  if (lookups > SPF_LOOKUP_LIMIT) problems.push(`${exact ? '' : 'at least '}${lookups} DNS lookups, more than the ${SPF_LOOKUP_LIMIT} RFC 7208 allows: receivers return permerror`);
  return { lookups, exact, problems };
}
