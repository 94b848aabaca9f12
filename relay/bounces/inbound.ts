/**
 * A `bounces` listener's DATA: a report to a return path (relay/bounces/return-path.ts), read
 * (report.ts), turned into events (a bounce or delay after the 250, a complaint) and, for hard
 * bounces and complaints, suppressions. Nothing is stored or relayed: the message ends here.
 * The 250 comes after the events are in the outbox (the reporting server keeps the report and
 * tries again otherwise); a report we cannot read is taken and counted, never bounced back (a
 * bounce of a bounce would loop).
 */
import os from 'node:os';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Session } from '../intake/smtp/session.js';
import { reportEvent, type RelayEvent, type ReportSubject } from '../events/event.js';
import type { IntakeMetrics } from '../metrics.js';
import { refusal, type SmtpRefusal } from '../refusals.js';
import { COMPLAINT_PREFIX, isHardBounce, type HardBounceCandidate } from '../suppression.js';
import { readReport, type Report } from './report.js';
import { readReturnPath, type ReturnPathOwner } from './return-path.js';
import { unsubscribe } from '../links/server.js';
import { readLinkToken } from '../links/token.js';
import { tokenInSubject, UNSUBSCRIBE_MAILBOX } from '../links/unsubscribe.js';

/** The mailbox at a return path domain that feedback loops (Yahoo's CFL, Microsoft's JMRP) are registered with. */
export const FEEDBACK_MAILBOX = 'fbl';

export interface ReportDeps {
  hostname: string;
  owners: readonly ReturnPathOwner[];
  key: string;
  /** Return path domains whose unsubscribe@ mailbox is on (senderDomains[].unsubscribe.mailto), and the link key. */
  unsubscribeDomains: readonly string[];
  linksKey?: string;
  /** Into the outbox (relay/queue/client.ts publish); resolves with how many were taken. */
  publish: (events: RelayEvent[]) => Promise<number>;
  suppress: (candidate: HardBounceCandidate) => void;
  metrics: IntakeMetrics;
  log: Logger;
  now: () => number;
}

/**
 * Whether a `bounces` listener takes mail for this address: a return path it made, the
 * feedback mailbox of a return path domain, or its unsubscribe mailbox where that is on.
 */
export function takesReportsFor(address: string, owners: readonly ReturnPathOwner[], key: string, unsubscribeDomains: readonly string[] = []): boolean {
  if (readReturnPath(address, owners, key)) return true;
  if (isUnsubscribeMailbox(address, unsubscribeDomains)) return true;
  const at = address.lastIndexOf('@');
  const domain = address.slice(at + 1).toLowerCase();
  return address.slice(0, at).toLowerCase() === FEEDBACK_MAILBOX && owners.some((o) => o.returnPath.toLowerCase() === domain);
}

const isUnsubscribeMailbox = (address: string, domains: readonly string[]) => {
  const at = address.lastIndexOf('@');
  return address.slice(0, at).toLowerCase() === UNSUBSCRIBE_MAILBOX && domains.includes(address.slice(at + 1).toLowerCase());
};

/** The Subject of a message (unfolded), from its header section. */
export function subjectOf(raw: Buffer): string {
  const end = raw.indexOf('\r\n\r\n');
  const header = raw.subarray(0, end < 0 ? raw.length : end).toString('utf8').replace(/\r?\n[ \t]+/g, ' ');
  return /^subject:(.*)$/im.exec(header)?.[1]?.trim() ?? '';
}

/** The message a report is about: the return path it was sent to, else the one the receiver recorded in the quoted original. */
export function reportSubjectOf(rcpts: readonly string[], report: Report, owners: readonly ReturnPathOwner[], key: string): ReportSubject | undefined {
  const original = report.kind === 'other' ? undefined : report.original;
  for (const address of [...rcpts, original?.returnPath ?? '']) {
    const found = address && readReturnPath(address, owners, key);
    if (found) return { ...found, messageId: original?.messageId };
  }
  return undefined;
}

/** The events and suppressions a report makes (pure). */
export function reportOutcome(report: Report, subject: ReportSubject, ctx: { relay: string; pod?: string; now: number }): { events: RelayEvent[]; suppressions: HardBounceCandidate[] } {
  const events: RelayEvent[] = [];
  const suppressions: HardBounceCandidate[] = [];
  if (report.kind === 'dsn') {
    for (const r of report.recipients) {
      if (r.action !== 'failed' && r.action !== 'delayed') continue;
      events.push(reportEvent(subject, ctx, { type: r.action === 'failed' ? 'bounced' : 'deferred', recipient: r.recipient, status: r.status, diagnostic: r.diagnostic, remoteMta: r.remoteMta, report: { kind: 'dsn', reportingMta: report.reportingMta } }));
      if (r.action === 'failed' && isHardBounce(r.status)) suppressions.push({ sender: '', senderDomain: subject.senderDomain, recipient: r.recipient, statusCode: r.status, reply: r.diagnostic ?? r.status, at: ctx.now });
    }
  } else if (report.kind === 'complaint') {
    for (const recipient of report.recipients) {
      events.push(reportEvent(subject, ctx, { type: 'complained', recipient, report: { kind: 'complaint', feedbackType: report.feedbackType, userAgent: report.userAgent } }));
      // not-spam is a report that the message was wrongly filtered: no reason to stop sending.
      if (report.feedbackType !== 'not-spam') suppressions.push({ sender: '', senderDomain: subject.senderDomain, complaint: true, recipient, statusCode: '5.7.1', reply: `${COMPLAINT_PREFIX}(${report.feedbackType}) reported by ${report.userAgent ?? 'a feedback loop'}`, at: ctx.now });
    }
  }
  return { events, suppressions };
}

/**
 * What of a report is kept to read: its status part comes first and a quoted original is cut
 * (a truncated report still names its recipients). A listener open to the internet holds at
 * most this per session, whatever limits.maxMessageSize allows.
 */
const MAX_REPORT_BYTES = 1024 * 1024;

/** The engine's onData for a `bounces` listener. */
export function receiveReport(stream: Readable, session: Session, cb: (err?: Error | null, message?: string) => void, deps: ReportDeps, reject: (err: SmtpRefusal, session: Session, cb: (err?: Error | null) => void) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on('data', (c: Buffer) => {
    size += c.length;
    // Past the bound the rest is read and dropped: a report quotes at most a message's headers or a whole message.
    if (size <= MAX_REPORT_BYTES) chunks.push(c);
  });
  stream.once('end', () => {
    void handle(Buffer.concat(chunks), session, deps).then(
      (said) => cb(null, said),
      (err: Error) => {
        deps.log.error({ err, session: session.id }, 'could not record a report; the reporting server will try again');
        reject(refusal('reportUnreadable'), session, cb);
      },
    );
  });
}

/**
 * Mail to unsubscribe@RETURN-PATH: the Subject carries the token of the List-Unsubscribe
 * mailto. Taken either way (answering 5xx to a person's mail program helps nobody); a token
 * this fleet did not sign is counted and logged.
 */
async function unsubscribeByMail(raw: Buffer, session: Session, deps: ReportDeps): Promise<string> {
  const token = tokenInSubject(subjectOf(raw));
  const read = token && deps.linksKey ? readLinkToken(token, deps.linksKey) : undefined;
  const subject = read?.kind === 'u' ? read : undefined;
  if (!subject) {
    deps.metrics.unsubscribes.inc({ via: 'mailto', result: 'refused' });
    deps.log.info({ event: 'unsubscribe_refused', session: session.id, client: session.remoteAddress }, 'unsubscribe mail taken and ignored: its subject holds no token this fleet signed');
    return 'Taken, but no valid unsubscribe token in the subject: ignored';
  }
  await unsubscribe(subject, 'mailto', { hostname: () => deps.hostname, pod: os.hostname(), publish: deps.publish, suppress: deps.suppress, metrics: deps.metrics, log: deps.log, now: deps.now });
  return 'Unsubscribed';
}

async function handle(raw: Buffer, session: Session, deps: ReportDeps): Promise<string> {
  const rcpts = session.envelope.rcptTo.map((r) => r.address);
  if (rcpts.some((r) => isUnsubscribeMailbox(r, deps.unsubscribeDomains))) return unsubscribeByMail(raw, session, deps);
  const report = await readReport(raw);
  const subject = report.kind === 'other' ? undefined : reportSubjectOf(rcpts, report, deps.owners, deps.key);
  const base = { event: 'report', session: session.id, client: session.remoteAddress, kind: report.kind };
  if (!subject) {
    const why = report.kind === 'other' ? report.why : 'it names no message this fleet sent (no valid return path in it)';
    deps.metrics.reports.inc({ kind: report.kind, result: 'ignored' });
    deps.log.info({ ...base, why }, `report taken and ignored: ${why}`);
    return 'Report taken, but not understood: ignored';
  }
  const { events, suppressions } = reportOutcome(report, subject, { relay: deps.hostname, pod: os.hostname(), now: deps.now() });
  // Events first: if they cannot be written, the 4xx makes the reporter try again, and nothing was suppressed twice.
  if (events.length) await deps.publish(events);
  for (const s of suppressions) deps.suppress(s);
  deps.metrics.reports.inc({ kind: report.kind, result: 'taken' });
  for (const e of events) deps.metrics.senderDomainReports.inc({ sender_domain: subject.senderDomain, type: e.type });
  deps.log.info({ ...base, queueId: subject.queueId, senderDomain: subject.senderDomain, events: events.map((e) => `${e.type} ${e.recipient}`), suppressed: suppressions.length }, `report about ${subject.queueId}: ${events.length} event(s)`);
  return `Report taken: ${events.length} event(s)`;
}
