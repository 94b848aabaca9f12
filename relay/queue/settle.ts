/**
 * The settle step (Postfix's qmgr_defer and qmgr_bounce decisions), pure: one delivery
 * attempt's outcomes in; each recipient's new state, what to log and count, the retry time or
 * the end of the unit, and the notices due out. The queue manager applies the result to the
 * spool, the scheduler and the log; nothing here touches a socket, a disk or a clock.
 */
import { mayBounce, type DsnRecipient } from '../bounce.js';
import type { RecipientOutcome } from '../delivery/outcome.js';
import { isThrottling } from '../delivery/providers.js';
import type { Envelope, RecipientState } from '../envelope.js';
import type { FailureDecision } from './scheduler.js';

export interface SettleInput {
  envelope: Readonly<Envelope>;
  outcomes: readonly RecipientOutcome[];
  /** The scheduler's verdict on the deferred recipients (retry when, or expired); unused when none was deferred. */
  decideRetry: () => FailureDecision;
  /**
   * The relay is stopping and cut this attempt short itself: what did not go is due again at
   * once (for the next start or the peer it is handed to), not after a backoff.
   */
  interrupted: boolean;
  now: number;
  /** Seconds after acceptance at which a still-deferred sender hears of the delay once (0: never). */
  delayNoticeAfter: number;
  /** Seconds a message may stay in the queue (the delay notice says until when it is retried). */
  lifetime: number;
}

/** What became of one recipient in this attempt. */
export interface RecipientResult {
  address: string;
  result: 'delivered' | 'bounced' | 'deferred';
  reply: string;
  statusCode: string;
  remoteMta?: string;
  /** A bounce from the destination itself (not an expiry): the suppression list hears of it. */
  permanent: boolean;
  /** Bounced because the message outlived the queue lifetime (the last reply was a deferral). */
  expired: boolean;
  /** Deferred: when it is tried again. */
  retryAt?: number;
}

export interface Settlement {
  /** The new state of every recipient this attempt had an outcome for. */
  recipients: RecipientState[];
  results: RecipientResult[];
  /** retry: these recipients of the unit wait until `at`; done: the unit is finished. */
  next: { kind: 'retry'; at: number; recipients: string[] } | { kind: 'done' };
  /** A deferred reply that says the destination's provider is limiting us. */
  throttledBy?: RecipientOutcome;
  /** A delay notice due now to the sender, for these recipients. */
  delayNotice?: DsnRecipient[];
}

export function settle(input: SettleInput): Settlement {
  const { envelope: env, outcomes, now } = input;
  const deferred = outcomes.filter((o) => o.kind === 'deferred');
  const decision: FailureDecision | undefined = deferred.length ? (input.interrupted ? { kind: 'retry', at: now } : input.decideRetry()) : undefined;
  const recipients: RecipientState[] = [];
  const results: RecipientResult[] = [];
  for (const o of outcomes) {
    const current = env.recipients.find((x) => x.address === o.address);
    if (!current) continue;
    // Fields named, not spread: object spread costs ~1 µs on Node 20's V8, on every recipient.
    const r: RecipientState = { address: current.address, status: current.status, lastReply: o.reply, statusCode: o.statusCode, remoteMta: o.remoteMta };
    let retryAt: number | undefined;
    let expired = false;
    if (o.kind === 'delivered') r.status = 'delivered';
    else if (o.kind === 'failed' || decision?.kind === 'expired') {
      r.status = 'failed';
      if (o.kind === 'deferred') {
        expired = true;
        r.statusCode = '4.4.7';
        r.lastReply = `message expired after ${Math.round((now - env.receivedAt) / 3600_000)} h in the queue; last reply: ${o.reply}`;
      }
    } else retryAt = decision?.kind === 'retry' ? decision.at : undefined;
    recipients.push(r);
    const result = r.status === 'pending' ? 'deferred' : r.status === 'delivered' ? 'delivered' : 'bounced';
    results.push({ address: o.address, result, reply: r.lastReply!, statusCode: r.statusCode!, remoteMta: o.remoteMta, permanent: o.kind === 'failed', expired, retryAt });
  }
  const throttledBy = deferred.find((o) => isThrottling(o.reply, o.statusCode));
  if (decision?.kind !== 'retry') return { recipients, results, next: { kind: 'done' }, throttledBy };
  const after = { ...env, recipients: env.recipients.map((r) => recipients.find((x) => x.address === r.address) ?? r) };
  return {
    recipients,
    results,
    next: { kind: 'retry', at: decision.at, recipients: deferred.map((o) => o.address) },
    throttledBy,
    delayNotice: delayNoticeDue(after, now, input.delayNoticeAfter, input.lifetime),
  };
}

/** RFC 3464 "delayed" recipients, once per message, when it has waited past delayNoticeAfter and its sender may hear. */
export function delayNoticeDue(env: Readonly<Envelope>, now: number, delayNoticeAfter: number, lifetime: number): DsnRecipient[] | undefined {
  if (!delayNoticeAfter || env.delayNoticeSent || now - env.receivedAt < delayNoticeAfter * 1000 || !mayBounce(env.sender)) return undefined;
  const willRetryUntil = new Date(env.receivedAt + lifetime * 1000);
  return env.recipients
    .filter((r) => r.status === 'pending')
    .map((r) => ({ address: r.address, action: 'delayed', status: r.statusCode ?? '4.0.0', diagnostic: r.lastReply, remoteMta: r.remoteMta, lastAttempt: new Date(now), willRetryUntil }));
}

/** The one failure notice a finished message owes its sender: its failed recipients, unless the sender may not hear (null sender, noreply). */
export function bounceNoticeDue(env: Readonly<Envelope>, now: number): DsnRecipient[] | undefined {
  const failed = env.recipients.filter((r) => r.status === 'failed');
  if (!failed.length || !mayBounce(env.sender)) return undefined;
  return failed.map((r) => ({ address: r.address, action: 'failed', status: r.statusCode ?? '5.0.0', diagnostic: r.lastReply, remoteMta: r.remoteMta, lastAttempt: new Date(now) }));
}
