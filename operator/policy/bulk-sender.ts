/**
 * BulkSenderReady as a pure function of what the SenderDomain controller gathered: whether the
 * domain meets what Gmail and Yahoo (since February 2024) and Outlook.com (since May 2025) ask
 * of bulk senders, and, when it does not, each failing check with what to do about it.
 *
 * The checks: SPF, DKIM (the active keys) and DMARC served as status.records recommends (the
 * records' own DNS check: DKIM's d= is the domain itself and SPF is for the domain or its
 * return path, a subdomain, so both align relaxed; the recommended DMARC has p= none,
 * quarantine or reject, each of which they take); forward-confirmed reverse DNS for every
 * address mail leaves from (the egress addresses of the MailRelays that select the domain and
 * deliver to the MX themselves: through a smarthost, the smarthost's addresses are its
 * provider's); one-click unsubscribe (spec.unsubscribe); TLS to the next hop (the mx route
 * uses STARTTLS whenever the MX offers it; a smarthost in plain text fails).
 */
import { isIP } from 'node:net';

/** A record as status.records shows it after this pass. */
export interface BulkSenderRecord {
  name: string;
  purpose: string;
  selector?: string | undefined;
  dns: 'match' | 'missing' | 'different' | 'error' | 'unknown';
  difference?: string | undefined;
}

/** What a MailRelay that selects the domain says of how it sends. */
export interface BulkSenderRelay {
  name: string;
  route: 'mx' | 'smarthost';
  smarthost?: { host: string; tls: string } | undefined;
  egressAddresses: readonly string[];
}

/** One egress address looked up in DNS: its PTR names, and each name's addresses. */
export interface ReverseLookup {
  address: string;
  /** The PTR names (an empty list: no PTR record), or why the query failed. */
  ptr: string[] | { error: string };
  /** Each PTR name's A and AAAA addresses, or why the query failed. */
  forward: { name: string; addresses: string[] | { error: string } }[];
}

export interface BulkSenderFacts {
  /** spec.domain. */
  domain: string;
  records: readonly BulkSenderRecord[];
  /** The DKIM selectors that sign now. */
  activeSelectors: readonly string[];
  /** Whether spec.unsubscribe is set. */
  unsubscribe: boolean;
  /** The MailRelays that select the domain. */
  relays: readonly BulkSenderRelay[];
  /** The lookups of egressToCheck(relays); undefined: not looked up yet. */
  reverse?: readonly ReverseLookup[] | undefined;
}

export interface BulkSenderVerdict {
  status: 'True' | 'False';
  reason: 'RequirementsMet' | 'RequirementsNotMet';
  message: string;
}

const SINGLE = /^(.*)\/(32|128)$/;

/** An address as one spelling (IPv6 compressed, lower case); a range stays as it is. */
export function canonicalAddress(address: string): string {
  const bare = SINGLE.exec(address)?.[1] ?? address;
  if (isIP(bare) === 6) return new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  return isIP(bare) === 4 ? bare : address;
}

/** The addresses FCrDNS looks up: the single egress addresses (not ranges) of the relays that deliver to the MX themselves. */
export function egressToCheck(relays: readonly BulkSenderRelay[]): string[] {
  const all = relays.filter((r) => r.route === 'mx').flatMap((r) => r.egressAddresses.map(canonicalAddress));
  return [...new Set(all.filter((a) => isIP(a)))].sort();
}

function recordProblem(r: BulkSenderRecord): string | undefined {
  switch (r.dns) {
    case 'match':
      return undefined;
    case 'missing':
      return `no record at ${r.name} (publish the record in status.records)`;
    case 'different':
      return `${r.name} is not the record status.records recommends: ${r.difference ?? 'it differs'} (publish the recommended record, or change spec to what you publish)`;
    case 'error':
      return `the query for ${r.name} failed: ${r.difference ?? 'no answer'} (check spec.verification.resolvers; it is checked again every verification.interval)`;
    default:
      return `${r.name} has not been checked yet (wait for the operator's first DNS check)`;
  }
}

function recordChecks(facts: BulkSenderFacts): string[] {
  const problems: string[] = [];
  const of = (label: string, records: readonly BulkSenderRecord[]) => {
    const found = records.map(recordProblem).filter((p): p is string => !!p);
    if (found.length) problems.push(`${label}: ${found.join(', ')}`);
  };
  of('SPF', facts.records.filter((r) => r.purpose === 'spf'));
  if (facts.activeSelectors.length === 0) problems.push('DKIM: no key signs yet (wait for KeysReady)');
  else of('DKIM', facts.records.filter((r) => r.purpose === 'dkim' && r.selector && facts.activeSelectors.includes(r.selector)));
  const dmarc = facts.records.filter((r) => r.purpose === 'dmarc');
  if (!dmarc.length) problems.push(`DMARC: no DMARC record is recommended for ${facts.domain} (set spec.dmarc)`);
  else of('DMARC', dmarc);
  return problems;
}

/** One address's FCrDNS: the PTR names a host whose A or AAAA records include the address. */
function reverseProblem(look: ReverseLookup): { problem?: string; host?: string } {
  const a = look.address;
  const kind = isIP(a) === 6 ? 'AAAA' : 'A';
  if (!Array.isArray(look.ptr)) return { problem: `FCrDNS: the PTR query for ${a} failed: ${look.ptr.error} (check spec.verification.resolvers)` };
  if (look.ptr.length === 0) return { problem: `FCrDNS: ${a} has no PTR record (ask your provider to set one naming a host whose ${kind} record is ${a})` };
  for (const f of look.forward) if (Array.isArray(f.addresses) && f.addresses.map(canonicalAddress).includes(a)) return { host: f.name };
  const said = look.forward.map((f) => (Array.isArray(f.addresses) ? `${f.name} resolves to ${f.addresses.join(', ') || 'nothing'}` : `the query for ${f.name} failed: ${f.addresses.error}`));
  return { problem: `FCrDNS: the PTR of ${a} names ${look.ptr.join(', ')}, but ${said.join('; ')} (give ${look.ptr[0]} the ${kind} record ${a}, or ask your provider to point the PTR at a host that has it)` };
}

function fcrdnsChecks(facts: BulkSenderFacts): { problems: string[]; confirmed: string[] } {
  const problems: string[] = [];
  const confirmed: string[] = [];
  const mx = facts.relays.filter((r) => r.route === 'mx');
  for (const r of mx) {
    if (!r.egressAddresses.length) problems.push(`FCrDNS: MailRelay ${r.name} has no spec.delivery.egressAddresses (set the public addresses its mail leaves from, after NAT: they cannot be seen from inside the cluster)`);
    for (const range of r.egressAddresses.filter((e) => !isIP(canonicalAddress(e)))) problems.push(`FCrDNS: ${range} of MailRelay ${r.name} is a range, not an address (list the addresses mail leaves from one by one, so each one's PTR can be checked)`);
  }
  const wanted = egressToCheck(facts.relays);
  if (wanted.length && !facts.reverse) problems.push(`FCrDNS: ${wanted.join(', ')} not looked up yet (wait for the operator's next DNS check)`);
  for (const address of facts.reverse ? wanted : []) {
    const look = facts.reverse!.find((l) => canonicalAddress(l.address) === address);
    const { problem, host } = look ? reverseProblem({ ...look, address }) : { problem: `FCrDNS: ${address} not looked up yet (wait for the operator's next DNS check)` };
    if (problem) problems.push(problem);
    else confirmed.push(`${address} (${host})`);
  }
  return { problems, confirmed };
}

function tlsChecks(relays: readonly BulkSenderRelay[]): string[] {
  return relays
    .filter((r) => r.route === 'smarthost' && r.smarthost?.tls === 'none')
    .map((r) => `TLS: MailRelay ${r.name} sends to smarthost ${r.smarthost!.host} in plain text (set spec.delivery.smarthost.tls to starttls or implicit)`);
}

export function bulkSenderReadiness(facts: BulkSenderFacts): BulkSenderVerdict {
  const relays = [...facts.relays].sort((a, b) => a.name.localeCompare(b.name));
  const fcrdns = fcrdnsChecks({ ...facts, relays });
  const problems = [
    ...recordChecks(facts),
    ...(relays.length ? fcrdns.problems : ['MailRelay: none selects this SenderDomain, so none sends its mail (set a MailRelay\'s spec.senderDomainSelector to match its labels)']),
    ...(facts.unsubscribe ? [] : ['one-click unsubscribe: spec.unsubscribe is not set (set spec.unsubscribe.url to the public https origin of the relays\' links endpoint: docs/operator.md#one-click-unsubscribe)']),
    ...tlsChecks(relays),
  ];
  if (problems.length) return { status: 'False', reason: 'RequirementsNotMet', message: problems.join('; ') };
  const smarthosts = [...new Set(relays.filter((r) => r.route === 'smarthost').map((r) => r.smarthost?.host ?? ''))];
  const reverse = [...(fcrdns.confirmed.length ? [`FCrDNS for ${fcrdns.confirmed.join(', ')}`] : []), ...(smarthosts.length ? [`FCrDNS left to smarthost ${smarthosts.join(', ')}`] : [])];
  return { status: 'True', reason: 'RequirementsMet', message: `${facts.domain} meets the bulk sender requirements of Gmail, Yahoo and Outlook.com: SPF, DKIM and DMARC served; ${reverse.join('; ')}; one-click unsubscribe; TLS to the next hop` };
}
