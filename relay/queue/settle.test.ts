import { describe, expect, it } from 'vitest';
import type { RecipientOutcome } from '../delivery/outcome.js';
import type { Envelope } from '../envelope.js';
import { classification } from './classify.js';
import { regroup } from './regroup.js';
import type { Unit } from './scheduler.js';
import { bounceNoticeDue, settle, type SettleInput } from './settle.js';

const H = 3600_000;
const received = Date.parse('2026-12-01T00:00:00Z');

function envelope(over: Partial<Envelope> = {}): Envelope {
  return {
    id: 'Q1',
    sender: 'app@example.test',
    recipients: ['a@one.test', 'b@one.test', 'c@two.test'].map((address) => ({ address, status: 'pending' as const })),
    receivedAt: received,
    listener: 'open',
    client: '127.0.0.1',
    headerLength: 20,
    attempts: 0,
    nextAttemptAt: received,
    ...over,
  };
}
const unit: Unit = { id: 'Q1/one.test', messageId: 'Q1', destination: 'one.test', recipients: ['a@one.test', 'b@one.test'], attempts: 0, dueAt: received, receivedAt: received };
const outcome = (address: string, kind: RecipientOutcome['kind'], reply: string, statusCode: string): RecipientOutcome => ({ address, kind, reply, statusCode, remoteMta: 'mx.one.test' });
const input = (over: Partial<SettleInput>): SettleInput => ({
  envelope: envelope(),
  outcomes: [],
  decideRetry: () => ({ kind: 'retry', at: received + 600_000 }),
  interrupted: false,
  now: received + 1000,
  delayNoticeAfter: 4 * 3600,
  lifetime: 5 * 86400,
  ...over,
});

describe('settle: one attempt in, recipients and what follows out (no sockets, no disk, no clock)', () => {
  it('a delivered and a deferred recipient: the deferred one retries when the scheduler says, the other is done', () => {
    const s = settle(input({ outcomes: [outcome('a@one.test', 'delivered', '250 ok', '2.0.0'), outcome('b@one.test', 'deferred', '451 4.3.0 try later', '4.3.0')] }));
    expect(s.recipients).toEqual([
      { address: 'a@one.test', status: 'delivered', lastReply: '250 ok', statusCode: '2.0.0', remoteMta: 'mx.one.test' },
      { address: 'b@one.test', status: 'pending', lastReply: '451 4.3.0 try later', statusCode: '4.3.0', remoteMta: 'mx.one.test' },
    ]);
    expect(s.results.map((r) => [r.address, r.result, r.retryAt])).toEqual([
      ['a@one.test', 'delivered', undefined],
      ['b@one.test', 'deferred', received + 600_000],
    ]);
    expect(s.next).toEqual({ kind: 'retry', at: received + 600_000, recipients: ['b@one.test'] });
    expect(s.delayNotice).toBeUndefined();
  });

  it('a 5xx bounces at once and is marked permanent (the suppression list hears of it); the unit is done', () => {
    const s = settle(input({ outcomes: [outcome('a@one.test', 'failed', '550 5.1.1 no such user', '5.1.1'), outcome('b@one.test', 'delivered', '250 ok', '2.0.0')] }));
    expect(s.next).toEqual({ kind: 'done' });
    expect(s.results[0]).toMatchObject({ result: 'bounced', permanent: true, expired: false, statusCode: '5.1.1' });
    expect(s.recipients[0]).toMatchObject({ status: 'failed' });
  });

  it('a deferral past the lifetime bounces as expired (4.4.7, not permanent: no suppression), and the notice lists it', () => {
    const now = received + 5 * 86400_000;
    const s = settle(input({ now, outcomes: [outcome('a@one.test', 'deferred', '421 4.7.0 busy', '4.7.0')], decideRetry: () => ({ kind: 'expired' }) }));
    expect(s.next).toEqual({ kind: 'done' });
    expect(s.recipients[0]).toMatchObject({ status: 'failed', statusCode: '4.4.7', lastReply: 'message expired after 120 h in the queue; last reply: 421 4.7.0 busy' });
    expect(s.results[0]).toMatchObject({ result: 'bounced', permanent: false, expired: true });
    const after = envelope({ recipients: [s.recipients[0]!, { address: 'b@one.test', status: 'delivered' }] });
    expect(bounceNoticeDue(after, now)).toEqual([expect.objectContaining({ address: 'a@one.test', action: 'failed', status: '4.4.7' })]);
  });

  it('an attempt the relay cut short itself (stopping) is due again at once, without asking the scheduler for a backoff', () => {
    const s = settle(input({ interrupted: true, decideRetry: () => expect.unreachable('no backoff for an interrupted attempt'), outcomes: [outcome('a@one.test', 'deferred', 'local error', '4.3.0')] }));
    expect(s.next).toMatchObject({ kind: 'retry', at: received + 1000 });
  });

  it('a delay notice is due once the message has waited delayNoticeAfter, once, and only to a sender who may hear', () => {
    const later = received + 5 * H;
    const deferred = [outcome('a@one.test', 'deferred', '451 later', '4.3.0')];
    expect(settle(input({ now: later, outcomes: deferred })).delayNotice).toEqual([
      expect.objectContaining({ address: 'a@one.test', action: 'delayed', status: '4.3.0' }),
      expect.objectContaining({ address: 'b@one.test', action: 'delayed' }),
      expect.objectContaining({ address: 'c@two.test', action: 'delayed' }),
    ]);
    expect(settle(input({ now: later, outcomes: deferred, envelope: envelope({ delayNoticeSent: true }) })).delayNotice).toBeUndefined();
    expect(settle(input({ now: later, outcomes: deferred, envelope: envelope({ sender: '' }) })).delayNotice).toBeUndefined();
    expect(settle(input({ now: received + 3 * H, outcomes: deferred })).delayNotice).toBeUndefined();
  });

  it('names the deferred reply that says the provider is throttling us', () => {
    const s = settle(input({ outcomes: [outcome('a@one.test', 'deferred', '421 4.7.28 Our system has detected an unusual rate of unsolicited mail', '4.7.28')] }));
    expect(s.throttledBy?.address).toBe('a@one.test');
    expect(settle(input({ outcomes: [outcome('a@one.test', 'deferred', '451 4.3.0 disk full', '4.3.0')] })).throttledBy).toBeUndefined();
  });

  it('no failure notice for a null sender, or when nothing failed', () => {
    const failed = envelope({ recipients: [{ address: 'a@one.test', status: 'failed', statusCode: '5.1.1' }] });
    expect(bounceNoticeDue({ ...failed, sender: '' }, received)).toBeUndefined();
    expect(bounceNoticeDue(envelope({ recipients: [{ address: 'a@one.test', status: 'delivered' }] }), received)).toBeUndefined();
    expect(bounceNoticeDue(failed, received)).toHaveLength(1);
  });
});

describe('classification and regrouping (pure)', () => {
  const providers = [{ name: 'gmail', mxHosts: ['google.com'], throttleBackoff: 300, requireTls: false }];
  it('a configured provider is the group; another answer stands alone; DNS that could not say is asked again within a minute', () => {
    expect(classification('corp.test', 'gmail', providers, 0)).toEqual({ group: 'gmail', label: 'gmail', expiresAt: 3600_000 });
    expect(classification('small.test', 'other', providers, 0)).toEqual({ group: 'small.test', label: 'other', expiresAt: 3600_000 });
    expect(classification('flaky.test', undefined, providers, 0)).toEqual({ group: 'flaky.test', label: 'other', expiresAt: 30_000 });
  });

  it('waiting units move under the new route keeping their earliest due time and most attempts, one unit per message and destination', () => {
    const waiting: Unit[] = [
      { ...unit, dueAt: received + 5000, attempts: 2 },
      { id: 'Q1/two.test', messageId: 'Q1', destination: 'two.test', recipients: ['c@two.test'], attempts: 1, dueAt: received + 1000, receivedAt: received },
    ];
    const { units, unitsAdded } = regroup(waiting, () => 'smarthost:relay:587');
    expect(units).toEqual([{ id: 'Q1/smarthost:relay:587', messageId: 'Q1', destination: 'smarthost:relay:587', recipients: ['a@one.test', 'b@one.test', 'c@two.test'], attempts: 2, dueAt: received + 1000, receivedAt: received }]);
    expect(unitsAdded.get('Q1')).toBe(-1);
  });
});
