/**
 * The DNS records a sender domain needs (SPF, DKIM, DMARC, MTA-STS, TLS-RPT) as a pure
 * function of the domain's settings, how the relay delivers, and the DKIM public keys. The
 * relay's `mailfleet records` and the operator's SenderDomain status both build on it, so the
 * inputs are small structural types rather than the relay's config.
 */
import { createHash } from 'node:crypto';
import type { DkimAlgorithm } from './dkim-keys.js';

export type RecordPurpose = 'spf' | 'dkim' | 'dmarc' | 'mta-sts' | 'tls-rpt' | 'mx' | 'links';

export interface DnsRecord {
  /** Fully qualified, without the trailing dot. */
  name: string;
  type: 'TXT' | 'MX' | 'CNAME';
  /** TXT: the text; MX: preference and host, `10 bounces-mx.example.com`; CNAME: the host. */
  value: string;
  /** TXT: `value` in character-strings of at most 255 bytes, as a TXT record carries it; MX, CNAME: none. */
  strings: string[];
  purpose: RecordPurpose;
  selector?: string;
  note?: string;
}

/** The MTA-STS policy file: served over HTTPS, not DNS. */
export interface MtaStsPolicy {
  url: string;
  content: string;
}

export interface DomainRecords {
  domain: string;
  records: DnsRecord[];
  policies: MtaStsPolicy[];
  warnings: string[];
}

type DmarcPolicy = 'none' | 'quarantine' | 'reject';

/** What the records depend on; the relay's SenderDomainConfig fits it. */
export interface SenderDomainRecordsInput {
  domain: string;
  spf: { include: string[]; ipRanges: string[]; all: '~all' | '-all' };
  dmarc: { policy: DmarcPolicy; subdomainPolicy?: DmarcPolicy | undefined; rua: string[]; pct: number; alignment: 'relaxed' | 'strict' };
  mtaSts?: { mode: 'enforce' | 'testing' | 'none'; mx: string[]; maxAge: number } | undefined;
  tlsRpt?: { rua: string[] } | undefined;
  /** The VERP return path domain (the envelope sender's domain, so SPF is checked there). */
  returnPath?: string | undefined;
  /** The hosts of the domain's unsubscribe and tracking URLs (those under the domain get a CNAME). */
  linkHosts?: string[] | undefined;
}

/** How the relay sends mail, which decides what SPF must allow. */
export interface RelayFacts {
  route: 'mx' | 'smarthost' | 'file';
  smarthostHost?: string | undefined;
  /** Public addresses (or CIDR ranges) mail leaves from, for the mx route. */
  egressAddresses: string[];
  /** The public host name of the bounces listeners, which a return path's MX names. */
  bouncesMxHost?: string | undefined;
  /** The public host name of the links endpoint (its Ingress or load balancer), which the link hosts' CNAMEs name. */
  linksHost?: string | undefined;
}

export interface DkimRecordKey {
  selector: string;
  algorithm: DkimAlgorithm;
  publicKey: string;
}

/** RFC 7208 §4.6.4: more DNS-querying terms than this and receivers return permerror. */
export const SPF_LOOKUP_LIMIT = 10;
// RFC 7208 §3.4: keep the record small enough for a UDP answer.
const SPF_RECOMMENDED_MAX_BYTES = 450;
// RFC 8461 §3.2: max_age is at most a year.
const MTA_STS_MAX_AGE_LIMIT = 31_557_600;
const TXT_STRING_MAX_BYTES = 255;

interface SmarthostProvider {
  name: string;
  host: RegExp;
  include: string;
  /**
   * DNS lookups the include costs, itself and what it includes, as the provider publishes it
   * today (providers change these; `records --verify` counts through DNS). Unset: counted as 1.
   */
  lookups?: number;
}

const SMARTHOST_PROVIDERS: SmarthostProvider[] = [
  { name: 'Amazon SES', host: /^email-smtp(-fips)?\.[a-z0-9-]+\.amazonaws\.com$/, include: 'amazonses.com', lookups: 1 },
  { name: 'SendGrid', host: /^smtp\.sendgrid\.net$/, include: 'sendgrid.net', lookups: 1 },
  { name: 'Mailgun', host: /^smtp\.(eu\.)?mailgun\.org$/, include: 'mailgun.org' },
  { name: 'Office 365', host: /^smtp\.office365\.com$/, include: 'spf.protection.outlook.com', lookups: 2 },
  { name: 'Google', host: /^smtp(-relay)?\.gmail\.com$/, include: '_spf.google.com', lookups: 3 },
  { name: 'Postmark', host: /^smtp\.postmarkapp\.com$/, include: 'spf.mtasvc.net' },
];

/** Every record a sender domain needs, the MTA-STS policy file, and what the user should know. */
export function recordsFor(domain: SenderDomainRecordsInput, facts: RelayFacts, keys: DkimRecordKey[]): DomainRecords {
  const warnings: string[] = [];
  const records: DnsRecord[] = [spfRecord(domain, facts, warnings), ...keys.map((k) => dkimRecord(domain.domain, k)), dmarcRecord(domain, warnings)];
  if (keys.length === 0) warnings.push(`${domain.domain} has no DKIM keys: its mail goes out unsigned, and DMARC then rests on SPF alignment alone`);
  // Many receivers (Gmail among them) do not verify Ed25519 signatures yet (RFC 8463 expects both).
  else if (keys.every((k) => k.algorithm === 'ed25519-sha256')) warnings.push(`${domain.domain} has only Ed25519 DKIM keys: add an RSA key too, since many receivers verify only RSA signatures`);
  const policies: MtaStsPolicy[] = [];
  if (domain.mtaSts) {
    const { record, policy } = mtaSts(domain.domain, domain.mtaSts, warnings);
    records.push(record);
    policies.push(policy);
  }
  if (domain.tlsRpt) records.push(txt(`_smtp._tls.${domain.domain}`, `v=TLSRPTv1; rua=${domain.tlsRpt.rua.join(',')}`, 'tls-rpt'));
  if (domain.returnPath) {
    // Receivers check SPF against the envelope sender's domain: with VERP, the return path's.
    const spf = records[0]!;
    // A return path that is the domain itself is checked against the domain's own SPF record.
    if (domain.returnPath !== domain.domain) records.push(txt(domain.returnPath, spf.value, 'spf', { note: `the return path of ${domain.domain}: SPF is checked against the envelope sender's domain` }));
    if (facts.bouncesMxHost) records.push({ name: domain.returnPath, type: 'MX', value: `10 ${facts.bouncesMxHost}`, strings: [], purpose: 'mx', note: `the return path of ${domain.domain}: bounces and complaints reach the relays' bounces listener` });
    else warnings.push(`${domain.returnPath} needs an MX record naming the public host of the relays' bounces listener (set bounces.mxHost, or a MailRelay's spec.bounces.mxHost, and it is recommended here), or its bounces and complaints are lost`);
  }
  for (const host of domain.linkHosts ?? []) {
    // A host outside the domain is another zone's (a shared links host): not ours to recommend.
    if (host !== domain.domain && !host.endsWith(`.${domain.domain}`)) continue;
    if (host === domain.domain) warnings.push(`${host} is the sender domain itself: a link host needs a name of its own (a CNAME cannot stand beside the domain's other records); use e.g. links.${host}`);
    else if (facts.linksHost && facts.linksHost !== host) records.push({ name: host, type: 'CNAME', value: facts.linksHost, strings: [], purpose: 'links', note: `the links in mail from ${domain.domain} (unsubscribe, tracking) reach the relays' links endpoint` });
    else if (!facts.linksHost) warnings.push(`${host} must reach the relays' links endpoint (its Ingress), or the links in mail from ${domain.domain} fail: a CNAME to its public host (set links.publicHost, or a MailRelay's spec.links.publicHost, and it is recommended here)`);
  }
  return { domain: domain.domain, records, policies, warnings };
}

/** The hosts of a sender domain's unsubscribe and tracking URLs. */
export function linkHostsOf(d: { unsubscribe?: { url: string } | undefined; tracking?: { url: string } | undefined }): string[] {
  return [...new Set([d.unsubscribe?.url, d.tracking?.url].flatMap((u) => (u ? [new URL(u).hostname.toLowerCase()] : [])))];
}

function txt(name: string, value: string, purpose: RecordPurpose, extra: Pick<DnsRecord, 'selector' | 'note'> = {}): DnsRecord {
  return { name, type: 'TXT', value, strings: splitTxtValue(value), purpose, ...extra };
}

function spfRecord(domain: SenderDomainRecordsInput, facts: RelayFacts, warnings: string[]): DnsRecord {
  const terms: string[] = [];
  // Lookups per include target (so a repeated include counts once), nested includes counted in.
  const lookups = new Map<string, number>();
  let exactCount = true;
  const include = (target: string, cost: number | undefined) => {
    terms.push(`include:${target}`);
    lookups.set(target, cost ?? 1);
    if (cost === undefined) exactCount = false;
  };
  const ipRange = (range: string) => terms.push(`${range.includes(':') ? 'ip6' : 'ip4'}:${range}`);

  if (facts.route === 'mx') {
    if (facts.egressAddresses.length === 0) {
      warnings.push(`the mx route has no delivery.egressAddresses, so the SPF record for ${domain.domain} cannot name the relay's addresses: add the public addresses mail leaves from (after NAT)`);
    }
    facts.egressAddresses.forEach(ipRange);
  } else if (facts.route === 'smarthost') {
    const host = (facts.smarthostHost ?? '').toLowerCase();
    const provider = SMARTHOST_PROVIDERS.find((p) => p.host.test(host));
    if (provider) include(provider.include, provider.lookups);
    else warnings.push(`mailfleet does not know the SPF include of smarthost ${facts.smarthostHost ?? '(none)'}: add the include its documentation gives to spf.include of ${domain.domain}`);
  } else {
    warnings.push(`the file route delivers nothing: the SPF record for ${domain.domain} names only spf.include and spf.ipRanges`);
  }
  domain.spf.ipRanges.forEach(ipRange);
  for (const target of domain.spf.include) {
    include(target, SMARTHOST_PROVIDERS.find((p) => p.include === target)?.lookups);
  }

  const value = ['v=spf1', ...new Set(terms), domain.spf.all].join(' ');
  const total = [...lookups.values()].reduce((a, b) => a + b, 0);
  if (total > SPF_LOOKUP_LIMIT) {
    warnings.push(
      `the SPF record for ${domain.domain} needs ${exactCount ? '' : 'at least '}${total} DNS lookups, more than the ${SPF_LOOKUP_LIMIT} RFC 7208 allows: receivers then fail SPF (permerror). Drop includes or replace them with ip4:/ip6: ranges`,
    );
  }
  const bytes = Buffer.byteLength(value);
  if (bytes > SPF_RECOMMENDED_MAX_BYTES) {
    warnings.push(`the SPF record for ${domain.domain} is ${bytes} bytes; keep it under ${SPF_RECOMMENDED_MAX_BYTES} so DNS answers fit in UDP (RFC 7208 §3.4)`);
  }
  const note = exactCount
    ? `${total} of ${SPF_LOOKUP_LIMIT} DNS lookups`
    : `at least ${total} of ${SPF_LOOKUP_LIMIT} DNS lookups (--verify counts the includes through DNS)`;
  return txt(domain.domain, value, 'spf', { note });
}

function dkimRecord(domain: string, key: DkimRecordKey): DnsRecord {
  const k = key.algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa';
  return txt(`${key.selector}._domainkey.${domain}`, `v=DKIM1; k=${k}; p=${key.publicKey}`, 'dkim', { selector: key.selector });
}

function dmarcRecord(domain: SenderDomainRecordsInput, warnings: string[]): DnsRecord {
  const { policy, subdomainPolicy, rua, pct, alignment } = domain.dmarc;
  const align = alignment === 'strict' ? 's' : 'r';
  // RFC 7489 §6.3: v first, p right after it.
  const tags = [`v=DMARC1`, `p=${policy}`];
  if (subdomainPolicy) tags.push(`sp=${subdomainPolicy}`);
  if (rua.length > 0) tags.push(`rua=${rua.join(',')}`);
  if (pct !== 100) tags.push(`pct=${pct}`);
  tags.push(`adkim=${align}`, `aspf=${align}`);

  if (rua.length === 0) warnings.push(`the DMARC record for ${domain.domain} has no rua: without aggregate reports you cannot see what passes before tightening the policy`);
  for (const uri of rua) {
    const reportDomain = uri.slice(uri.lastIndexOf('@') + 1).toLowerCase();
    if (reportDomain !== domain.domain && !reportDomain.endsWith(`.${domain.domain}`) && !domain.domain.endsWith(`.${reportDomain}`)) {
      warnings.push(
        `DMARC reports for ${domain.domain} go to ${reportDomain}: unless both share an organizational domain, ${reportDomain} must publish ${domain.domain}._report._dmarc.${reportDomain} TXT "v=DMARC1" (RFC 7489 §7.1) or receivers send no reports`,
      );
    }
  }
  return txt(`_dmarc.${domain.domain}`, tags.join('; '), 'dmarc');
}

function mtaSts(domain: string, spec: NonNullable<SenderDomainRecordsInput['mtaSts']>, warnings: string[]): { record: DnsRecord; policy: MtaStsPolicy } {
  const maxAge = Math.round(spec.maxAge);
  if (maxAge > MTA_STS_MAX_AGE_LIMIT) warnings.push(`mtaSts.maxAge of ${domain} is ${maxAge} s; RFC 8461 allows at most ${MTA_STS_MAX_AGE_LIMIT} (one year)`);
  const content = ['version: STSv1', `mode: ${spec.mode}`, ...spec.mx.map((mx) => `mx: ${mx}`), `max_age: ${maxAge}`].map((line) => `${line}\r\n`).join('');
  // Senders refetch the policy only when the id changes (RFC 8461 §3.1): derive it from the content.
  const id = createHash('sha256').update(content).digest('hex').slice(0, 20);
  const url = `https://mta-sts.${domain}/.well-known/mta-sts.txt`;
  const record = txt(`_mta-sts.${domain}`, `v=STSv1; id=${id}`, 'mta-sts', {
    note: `mta-sts.${domain} must serve the policy at ${url} over HTTPS with a certificate valid for that name`,
  });
  return { record, policy: { url, content } };
}

/**
 * Splits a TXT value into character-strings of at most 255 bytes (RFC 1035 §3.3.14); receivers
 * join them without separators. Splits between characters, never inside a UTF-8 sequence.
 */
export function splitTxtValue(value: string): string[] {
  const strings: string[] = [];
  let current = '';
  let currentBytes = 0;
  for (const char of value) {
    const bytes = Buffer.byteLength(char);
    if (currentBytes + bytes > TXT_STRING_MAX_BYTES) {
      strings.push(current);
      current = '';
      currentBytes = 0;
    }
    current += char;
    currentBytes += bytes;
  }
  strings.push(current);
  return strings;
}

/** One zone-file line: `name. TTL IN TXT "part1" "part2"`, or `name. TTL IN MX 10 host.`. */
export function formatZoneRecord(record: DnsRecord, ttl = 3600): string {
  if (record.type === 'MX' || record.type === 'CNAME') return `${record.name}. ${ttl} IN ${record.type} ${record.value}.`;
  const quoted = record.strings.map((s) => `"${zoneEscape(s)}"`).join(' ');
  return `${record.name}. ${ttl} IN ${record.type} ${quoted}`;
}

// RFC 1035 §5.1: quote and backslash are escaped; other non-printable bytes as \DDD.
function zoneEscape(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s)) {
    if (byte === 0x22 || byte === 0x5c) out += `\\${String.fromCharCode(byte)}`;
    else if (byte < 0x20 || byte > 0x7e) out += `\\${String(byte).padStart(3, '0')}`;
    else out += String.fromCharCode(byte);
  }
  return out;
}
