/**
 * What happens to a message and each of its recipients, as events for the senders' systems
 * (webhooks: relay/events/webhook.ts). This module is pure: the queue hands it what it just
 * decided (an acceptance, a settle step's results, a notice, a handoff) and gets the events
 * back; relay/events/outbox.ts makes them durable before the queue records its own progress.
 *
 * An event's id is a hash of what it is about (queue id, recipient, type, attempt), not a
 * random number: a relay that crashes after an event was written but before its progress was
 * recorded makes the same event again with the same id, so a receiver de-duplicates by id
 * (delivery is at least once).
 */
import crypto from 'node:crypto';
import { configuredDomainOf, domainOf } from '../address.js';
import type { Envelope } from '../envelope.js';
import { isHardBounce } from '../suppression.js';

export const EVENT_TYPES = ['received', 'delivered', 'deferred', 'bounced', 'expired', 'suppressed', 'handed_over', 'notice_sent', 'complained', 'unsubscribed', 'opened', 'clicked'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The version of the JSON below; a field is only ever added within one version. */
export const EVENT_SCHEMA_VERSION = 1;

export interface EventReply {
  /** The SMTP reply code (250, 451, 550...), when the reply had one. */
  code?: number;
  /** RFC 3463 enhanced status code, e.g. 5.1.1. */
  enhancedCode?: string;
  text: string;
  /** The host that answered (an MX host or the smarthost). */
  remoteMta?: string;
}

/**
 * permanent: the address or the message will not be taken (SES's Permanent); transient: the
 * message could not be delivered this time (a full mailbox, too large, refused as spam).
 */
export interface BounceInfo {
  type: 'permanent' | 'transient';
  category: BounceCategory;
}

export type BounceCategory = 'invalid_recipient' | 'invalid_domain' | 'mailbox_disabled' | 'mailbox_full' | 'message_too_large' | 'policy' | 'expired' | 'suppressed' | 'general';

export interface RelayEvent {
  id: string;
  type: EventType;
  /** RFC 3339, with milliseconds. */
  time: string;
  /** The relay (its hostname) where it happened. */
  relay: string;
  /** The relay process's host name: under Kubernetes the pod's name (all pods of a MailRelay share `relay`). */
  pod?: string;
  queueId: string;
  messageId?: string;
  /** The envelope sender ('' for the null sender). */
  sender: string;
  /** The configured sender domain the sender belongs to (parent domains count); null: none. */
  senderDomain: string | null;
  recipient: string;
  /** Delivery attempts to this recipient so far, this one included (0 for received and suppressed). */
  attempt: number;
  reply?: EventReply;
  /** bounced, expired and suppressed. */
  bounce?: BounceInfo;
  /** deferred: when it is tried again (RFC 3339). */
  retryAt?: string;
  /** notice_sent: the notice (DSN) the relay queued to the sender. */
  notice?: { queueId: string; action: 'failed' | 'delayed' };
  /** A bounce or delay reported later by a DSN to the return path, or a complaint: what the report said. */
  report?: { kind: 'dsn' | 'complaint'; reportingMta?: string; feedbackType?: string; userAgent?: string };
  /** unsubscribed: how the recipient asked (one_click: a mailbox provider's POST; page: the button on the link's page; mailto). */
  unsubscribe?: { via: UnsubscribeVia };
  /** clicked: the link the recipient followed (as the message had it). */
  click?: { url: string };
  /** opened and clicked: who fetched the link; `proxy` or `scanner` set: not counted as a person's. */
  client?: { userAgent?: string; proxy?: 'apple' | 'google' | 'yahoo'; scanner?: boolean };
  /** handed_over: the message was taken over from a peer relay that was stopping (by the relay and pod this event names). */
  handoff?: { originQueueId: string };
  tags?: string[];
  metadata?: Record<string, string>;
}

/** The message as an event needs it (an Envelope has it all). */
export type EventEnvelope = Pick<Envelope, 'id' | 'sender' | 'messageId' | 'recipients'> & Partial<Pick<Envelope, 'tags' | 'metadata'>>;

/** What the queue knows when it makes events. */
export interface EventContext {
  relay: string;
  /** The host (pod) name where it happened. */
  pod?: string;
  senderDomains: readonly string[];
  now: number;
}

/** A stable id: the same thing happening again (after a crash) gets the same id. */
export function eventId(queueId: string, recipient: string, type: EventType, attempt: number | string): string {
  return crypto.createHash('sha256').update(`${queueId}\0${recipient}\0${type}\0${attempt}`).digest('hex').slice(0, 32);
}

/** "550 5.1.1 <x@y>: no such user" → 550 and 5.1.1. */
export function replyOf(text: string, enhancedCode?: string, remoteMta?: string): EventReply {
  const code = /^([2-5]\d\d)[ -]/.exec(text)?.[1];
  return { code: code ? Number(code) : undefined, enhancedCode, text, remoteMta };
}

/**
 * The bounce's kind from its enhanced status code (RFC 3463), as the large providers' event
 * schemas tell it: the codes that put an address on the suppression list are permanent.
 */
export function bounceOf(enhancedCode: string | undefined, expired: boolean): BounceInfo {
  if (expired) return { type: 'transient', category: 'expired' };
  const code = enhancedCode ?? '';
  if (isHardBounce(code)) {
    const category = code === '5.1.2' || code === '5.1.10' ? 'invalid_domain' : code === '5.2.1' ? 'mailbox_disabled' : 'invalid_recipient';
    return { type: 'permanent', category };
  }
  if (code === '5.2.2' || code === '4.2.2') return { type: 'transient', category: 'mailbox_full' };
  if (code === '5.3.4' || code === '5.2.3') return { type: 'transient', category: 'message_too_large' };
  if (code.startsWith('5.7.')) return { type: 'transient', category: 'policy' };
  return { type: code.startsWith('5.') ? 'permanent' : 'transient', category: 'general' };
}

function base(env: EventEnvelope, ctx: EventContext, type: EventType, recipient: string, attempt: number): RelayEvent {
  return {
    id: eventId(env.id, recipient, type, attempt),
    type,
    time: new Date(ctx.now).toISOString(),
    relay: ctx.relay,
    pod: ctx.pod,
    queueId: env.id,
    messageId: env.messageId,
    sender: env.sender,
    senderDomain: configuredDomainOf(env.sender, ctx.senderDomains) ?? null,
    recipient,
    attempt,
    tags: env.tags,
    metadata: env.metadata,
  };
}

/**
 * A message that arrived (from a client, or from a peer that handed it over): received (or
 * handed_over) per recipient, and suppressed for those the suppression list failed at once.
 */
export function arrivalEvents(env: EventEnvelope & Pick<Envelope, 'handedOverFrom'>, ctx: EventContext): RelayEvent[] {
  const events: RelayEvent[] = [];
  for (const r of env.recipients) {
    if (env.handedOverFrom) {
      events.push({ ...base(env, ctx, 'handed_over', r.address, 0), handoff: { originQueueId: env.handedOverFrom } });
      continue;
    }
    events.push(base(env, ctx, 'received', r.address, 0));
    if (r.status === 'failed') events.push({ ...base(env, ctx, 'suppressed', r.address, 0), reply: replyOf(r.lastReply ?? '', r.statusCode), bounce: { type: 'permanent', category: 'suppressed' } });
  }
  return events;
}

/** One recipient's outcome of a delivery attempt (relay/queue/settle.ts RecipientResult, less what events do not carry). */
export interface AttemptResult {
  address: string;
  result: 'delivered' | 'bounced' | 'deferred';
  expired: boolean;
  reply: string;
  statusCode: string;
  remoteMta?: string;
  retryAt?: number;
}

export function attemptEvent(env: EventEnvelope, ctx: EventContext, r: AttemptResult, attempt: number): RelayEvent {
  const type: EventType = r.result === 'delivered' ? 'delivered' : r.result === 'deferred' ? 'deferred' : r.expired ? 'expired' : 'bounced';
  const event = { ...base(env, ctx, type, r.address, attempt), reply: replyOf(r.reply, r.statusCode, r.remoteMta) };
  if (type === 'deferred') return { ...event, retryAt: r.retryAt === undefined ? undefined : new Date(r.retryAt).toISOString() };
  if (type === 'bounced' || type === 'expired') return { ...event, bounce: bounceOf(r.statusCode, r.expired) };
  return event;
}

/** The relay queued a notice (DSN) to the sender about these recipients. */
export function noticeEvents(env: EventEnvelope, ctx: EventContext, notice: { queueId: string; action: 'failed' | 'delayed' }, recipients: readonly string[]): RelayEvent[] {
  return recipients.map((address) => ({ ...base(env, ctx, 'notice_sent', address, 0), id: eventId(env.id, address, 'notice_sent', notice.action === 'failed' ? 1 : 0), notice }));
}

/** What a report to a return path (relay/bounces/report.ts) is about: the message its token names. */
export interface ReportSubject {
  queueId: string;
  senderDomain: string;
  messageId?: string;
}

/**
 * A bounce or a delay that a DSN reported after the message was handed on (type bounced or
 * deferred, `report.kind` dsn), or a complaint (complained). Ids from the report's content:
 * the same report delivered twice is the same event.
 */
export function reportEvent(subject: ReportSubject, ctx: Omit<EventContext, 'senderDomains'>, r: { type: 'bounced' | 'deferred' | 'complained'; recipient: string; status?: string; diagnostic?: string; remoteMta?: string; report: NonNullable<RelayEvent['report']> }): RelayEvent {
  const event: RelayEvent = {
    id: eventId(subject.queueId, r.recipient.toLowerCase(), r.type, `report:${r.report.kind}`),
    type: r.type,
    time: new Date(ctx.now).toISOString(),
    relay: ctx.relay,
    pod: ctx.pod,
    queueId: subject.queueId,
    messageId: subject.messageId,
    sender: '',
    senderDomain: subject.senderDomain,
    recipient: r.recipient,
    attempt: 0,
    report: r.report,
  };
  if (r.type !== 'complained') event.reply = replyOf(r.diagnostic ?? r.status ?? '', r.status, r.remoteMta);
  if (r.type === 'bounced') event.bounce = bounceOf(r.status, false);
  return event;
}

export type UnsubscribeVia = 'one_click' | 'page' | 'mailto';

/** What a link in a message names (relay/links/token.ts): the message and recipient, no sender. */
type LinkSubject = { queueId: string; senderDomain: string; recipient: string };

/** The fields of an event a link makes. */
const linkEventBase = (subject: LinkSubject, ctx: Omit<EventContext, 'senderDomains'>, type: EventType, idPart: number | string) => ({
  id: eventId(subject.queueId, subject.recipient.toLowerCase(), type, idPart),
  type,
  time: new Date(ctx.now).toISOString(),
  relay: ctx.relay,
  pod: ctx.pod,
  queueId: subject.queueId,
  sender: '',
  senderDomain: subject.senderDomain,
  recipient: subject.recipient,
  attempt: 0,
});

/**
 * The recipient of a message asked to get no more mail from its sender domain (an
 * unsubscribe link, relay/links). One id per message and recipient, whichever way and however
 * often they asked: a receiver counts one unsubscribe.
 */
export function unsubscribeEvent(subject: LinkSubject, ctx: Omit<EventContext, 'senderDomains'>, via: UnsubscribeVia): RelayEvent {
  return { ...linkEventBase(subject, ctx, 'unsubscribed', 0), unsubscribe: { via } };
}

/**
 * The pixel of a message was loaded (opened) or one of its links followed (clicked). Each
 * fetch is its own event (its id has the time and a random part): a receiver counts them as
 * it likes, first opens or all.
 */
export function trackingEvent(subject: LinkSubject & { url?: string }, ctx: Omit<EventContext, 'senderDomains'>, type: 'opened' | 'clicked', client: NonNullable<RelayEvent['client']>, nonce: string): RelayEvent {
  return { ...linkEventBase(subject, ctx, type, `${ctx.now}:${nonce}`), ...(type === 'clicked' && subject.url ? { click: { url: subject.url } } : {}), client };
}

/** The sender domain an event belongs to, for a webhook's filter: the configured one, else the sender's own. */
export function eventDomain(e: Pick<RelayEvent, 'senderDomain' | 'sender'>): string {
  return e.senderDomain ?? domainOf(e.sender);
}
