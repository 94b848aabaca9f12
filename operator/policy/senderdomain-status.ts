/**
 * A SenderDomain's status as pure functions of what its controller gathered and did (as
 * cert-manager's readiness controller has a policy evaluator between its gatherer and its
 * status write): the conditions KeysReady, DNSVerified, Ready and Degraded with their
 * reasons, BulkSenderReady (./bulk-sender.ts) on the records as this pass sees them, the records with what DNS served, the Events a change of them deserves, and when
 * to look again. Also the two questions the gatherer asks before it acts: is a DNS check due,
 * and which selectors does DNS serve. Nothing here reads the clock or talks to a cluster.
 */
import { duration } from '../../relay/config.js';
import type { DnsRecord } from '../../relay/records.js';
import type { RecordCheck } from '../../relay/records-verify.js';
import type { DkimKeyStatus, SenderDomain } from '../api/v1alpha1.js';
import { setCondition } from '../controllers/conditions.js';
import type { Reason } from '../controllers/reasons.js';
import { bulkSenderReadiness, type BulkSenderFacts } from './bulk-sender.js';

export type SenderDomainStatus = NonNullable<SenderDomain['status']>;
type RecordStatus = NonNullable<SenderDomainStatus['records']>[number];

/** What the controller found and did in one pass, for the status. */
export interface SenderDomainFacts {
  /** The SenderDomain with its parsed spec, and its status as last written. */
  domain: SenderDomain;
  secretName: string;
  /** The keys after this pass's rotation step (./dkim-rotation.ts). */
  keys: readonly DkimKeyStatus[];
  /** Selectors that wait for DNS before they sign. */
  waitingForDns: readonly string[];
  nextStepAt?: Date | undefined;
  /** The records for `keys`. */
  records: readonly DnsRecord[];
  /** What DNS served, when this pass checked. */
  checks?: readonly RecordCheck[] | undefined;
  /** When DNS was last checked (this pass, when it did), ms since the epoch. */
  lastCheckedAt: number;
  /** Whether the cluster serves external-dns's DNSEndpoint API. */
  dnsEndpointServed: boolean;
  /** The API server's refusal of the DNSEndpoint, when it was applied and refused. */
  dnsEndpointError?: string | undefined;
  /** What the records cannot say (relay/records.ts, ../render/senderdomain.ts): the return path's MX among them. */
  warnings?: readonly string[] | undefined;
  /** What BulkSenderReady needs besides the records and keys: the selecting MailRelays and the egress addresses' reverse DNS. Absent: the condition is left as it was. */
  bulkSender?: Pick<BulkSenderFacts, 'relays' | 'reverse'> | undefined;
}

export interface StatusEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface SenderDomainVerdict {
  status: SenderDomainStatus;
  /** Events for what changed, in the order they are emitted. */
  events: StatusEvent[];
  /** Set when an object could not be applied: the reconcile fails after the status is written, so the work queue retries with backoff. */
  retry?: string;
  /** The next rotation step or DNS check, whichever is first (at least 1 s away). */
  requeueAfterMs: number;
}

/** An Event's reason is not a condition's: it is free to say what happened (DNSVerified). */
const event = (type: StatusEvent['type'], reason: string, message: string): StatusEvent => ({ type, reason, message });
const intervalMs = (domain: SenderDomain) => duration.parse(domain.spec.verification.interval) * 1000;
const sameRecord = (a: { name: string; value: string }, b: { name: string; value: string }) => a.name === b.name && a.value === b.value;

/** When DNS was last checked: the controller's memory of this process, or status (after a restart). */
export function lastCheckedAt(domain: SenderDomain, remembered: number | undefined): number {
  return Math.max(remembered ?? 0, domain.status?.lastVerifiedAt ? Date.parse(domain.status.lastVerifiedAt) : 0);
}

/** DNS is checked every verification interval, and at once when the records changed. */
export function dnsCheckDue(domain: SenderDomain, records: readonly DnsRecord[], lastChecked: number, now: Date): boolean {
  const shown = JSON.stringify((domain.status?.records ?? []).map((r) => [r.name, r.value]));
  if (shown !== JSON.stringify(records.map((r) => [r.name, r.value]))) return true;
  return now.getTime() - lastChecked >= intervalMs(domain);
}

/** What DNS serves for a record: this pass's check, else what status said at the last one. */
function dnsOf(record: DnsRecord, checks: readonly RecordCheck[] | undefined, previous: SenderDomainStatus | undefined) {
  return checks?.find((c) => sameRecord(c.record, record))?.status ?? previous?.records?.find((x) => sameRecord(x, record))?.dns;
}

/** The selectors whose DKIM record DNS serves as it should: the rotation may switch signing only to these. */
export function servedSelectors(domain: SenderDomain, records: readonly DnsRecord[], checks: readonly RecordCheck[] | undefined): (selector: string) => boolean {
  const served = new Map(records.filter((r) => r.selector).map((r) => [r.selector!, dnsOf(r, checks, domain.status)]));
  return (selector) => served.get(selector) === 'match';
}

/** The Ready condition of a spec that does not match the schema; the rest of status stays as it was. */
export function invalidSpecStatus(domain: SenderDomain, message: string, now: Date): SenderDomainStatus {
  const generation = domain.metadata.generation;
  return { ...domain.status, observedGeneration: generation, conditions: setCondition(domain.status?.conditions, { type: 'Ready', status: 'False', reason: 'InvalidSpec', message, observedGeneration: generation }, now) };
}

/** Each record with what DNS served: this pass's check, else what status said, else unknown. */
function recordStatus(records: readonly DnsRecord[], checks: readonly RecordCheck[] | undefined, previous: SenderDomainStatus | undefined): RecordStatus[] {
  const before = new Map((previous?.records ?? []).map((r) => [`${r.name}|${r.value}`, r]));
  return records.map((r) => {
    const check = checks?.find((c) => sameRecord(c.record, r));
    const was = before.get(`${r.name}|${r.value}`);
    const dns = check ? check.status : (was?.dns ?? 'unknown');
    const difference = check ? (check.difference ?? check.error) : was?.difference;
    return { name: r.name, type: r.type, value: r.value, strings: r.strings, purpose: r.purpose, ...(r.selector ? { selector: r.selector } : {}), dns, ...(difference ? { difference } : {}) };
  });
}

/** The DNSEndpoint is optional: its failure is reported (Degraded), never a reason to stop. */
function endpointProblem(facts: SenderDomainFacts): { reason: Reason; message: string } | undefined {
  const { domain } = facts;
  if (!domain.spec.dnsEndpoint.enabled) return undefined;
  if (!facts.dnsEndpointServed) {
    return { reason: 'APINotServed', message: 'spec.dnsEndpoint.enabled, but the cluster does not serve externaldns.k8s.io/v1alpha1: install external-dns with its DNSEndpoint CRD, or publish status.records yourself' };
  }
  if (facts.dnsEndpointError !== undefined) return { reason: 'ApplyFailed', message: `could not apply DNSEndpoint ${domain.metadata.name}-records: ${facts.dnsEndpointError}` };
  return undefined;
}

export function senderDomainStatus(facts: SenderDomainFacts, now: Date): SenderDomainVerdict {
  const { domain, checks } = facts;
  const spec = domain.spec;
  const before = domain.status;
  const generation = domain.metadata.generation;
  const records = recordStatus(facts.records, checks, before);
  const problem = endpointProblem(facts);

  const wanted = spec.dkim.keyType === 'both' ? 2 : 1;
  const active = facts.keys.filter((k) => k.state === 'active');
  const keysReady = active.length >= wanted;
  const notMatching = records.filter((r) => r.dns !== 'match');
  const dnsMessage = notMatching.length
    ? `${notMatching.length} of ${records.length} records not served as recommended: ${notMatching.map((r) => `${r.name} ${r.purpose} ${r.dns}${r.difference ? ` (${r.difference})` : ''}`).join('; ')}`
    : `all ${records.length} records served`;
  const waiting = facts.waitingForDns.length ? `; ${facts.waitingForDns.join(', ')} wait for DNS before they sign` : '';
  const ready = keysReady && !notMatching.length;

  let conditions = setCondition(before?.conditions, { type: 'KeysReady', status: keysReady ? 'True' : 'False', reason: keysReady ? 'Signing' : 'Generating', message: `signing with ${active.map((k) => k.selector).join(', ') || 'no key yet'}${waiting}`, observedGeneration: generation }, now);
  conditions = setCondition(conditions, { type: 'DNSVerified', status: notMatching.length ? 'False' : 'True', reason: notMatching.length ? 'RecordsNotServed' : 'RecordsServed', message: dnsMessage, observedGeneration: generation }, now);
  conditions = setCondition(conditions, { type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? 'Ready' : keysReady ? 'WaitingForDNS' : 'WaitingForKeys', message: ready ? `${spec.domain} signs and its records are served` : keysReady ? `publish the records in status.records (${dnsMessage})` : 'making keys', observedGeneration: generation }, now);
  conditions = setCondition(conditions, { type: 'Degraded', status: problem ? 'True' : 'False', reason: problem?.reason ?? 'Reconciled', message: problem?.message ?? 'keys, records and status up to date', observedGeneration: generation }, now);
  const bulk = facts.bulkSender && bulkSenderReadiness({ ...facts.bulkSender, domain: spec.domain, records, activeSelectors: active.map((k) => k.selector), unsubscribe: spec.unsubscribe !== undefined });
  if (bulk) conditions = setCondition(conditions, { type: 'BulkSenderReady', ...bulk, observedGeneration: generation }, now);

  // Events for changes only: a Degraded message not said before, a DNS verdict that turned.
  const events: StatusEvent[] = [];
  const degradedBefore = before?.conditions?.find((c) => c.type === 'Degraded');
  if (problem && (degradedBefore?.status !== 'True' || degradedBefore.message !== problem.message)) events.push(event('Warning', problem.reason, problem.message));
  const dnsBefore = before?.conditions?.find((c) => c.type === 'DNSVerified')?.status;
  const dnsAfter = notMatching.length ? 'False' : 'True';
  if (checks && dnsBefore !== dnsAfter) events.push(dnsAfter === 'True' ? event('Normal', 'DNSVerified', dnsMessage) : event('Warning', 'DNSNotVerified', dnsMessage));
  const bulkBefore = before?.conditions?.find((c) => c.type === 'BulkSenderReady')?.status;
  if (bulk && bulkBefore !== bulk.status) events.push(bulk.status === 'True' ? event('Normal', 'BulkSenderReady', bulk.message) : event('Warning', 'BulkSenderNotReady', bulk.message));

  const status: SenderDomainStatus = {
    observedGeneration: generation,
    conditions,
    secretName: facts.secretName,
    activeSelectors: active.map((k) => k.selector).join(','),
    keys: [...facts.keys],
    ...(facts.nextStepAt ? { nextRotationAt: facts.nextStepAt.toISOString() } : {}),
    records,
    lastVerifiedAt: checks ? now.toISOString() : before?.lastVerifiedAt,
    ...(facts.warnings?.length ? { warnings: [...facts.warnings] } : {}),
  };
  const nextCheck = facts.lastCheckedAt + intervalMs(domain);
  const nextStep = facts.nextStepAt?.getTime() ?? Infinity;
  return {
    status,
    events,
    ...(problem?.reason === 'ApplyFailed' ? { retry: problem.message } : {}),
    requeueAfterMs: Math.max(1000, Math.min(nextCheck, nextStep) - now.getTime()),
  };
}
