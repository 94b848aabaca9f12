import { describe, expect, it } from 'vitest';
import { arrivalEvents, attemptEvent, bounceOf, eventId, noticeEvents, replyOf } from './event.js';

const env = { id: 'LQ1ABC00001', sender: 'app@news.example.test', messageId: '<m@example.test>', recipients: [{ address: 'a@dest.test', status: 'pending' as const }, { address: 'b@dest.test', status: 'failed' as const, statusCode: '5.1.1', lastReply: 'suppressed since 2026-12-01T00:00:00Z after a hard bounce (550 5.1.1 no such user); not attempted' }], tags: ['t'] };
const ctx = { relay: 'relay-0', senderDomains: ['example.test'], now: Date.UTC(2026, 11, 6, 12) };

describe('events', () => {
  it('have ids from what they are about: the same event made again after a crash has the same id', () => {
    expect(eventId('Q1', 'a@x', 'delivered', 1)).toBe(eventId('Q1', 'a@x', 'delivered', 1));
    expect(new Set([eventId('Q1', 'a@x', 'delivered', 1), eventId('Q1', 'a@x', 'deferred', 1), eventId('Q1', 'a@x', 'deferred', 2), eventId('Q2', 'a@x', 'delivered', 1), eventId('Q1', 'b@x', 'delivered', 1)]).size).toBe(5);
  });

  it('on arrival: received per recipient, and suppressed for one the list failed; a handed-over message says so instead', () => {
    const events = arrivalEvents(env, ctx);
    expect(events.map((e) => [e.type, e.recipient])).toEqual([['received', 'a@dest.test'], ['received', 'b@dest.test'], ['suppressed', 'b@dest.test']]);
    expect(events[0]).toMatchObject({ senderDomain: 'example.test', relay: 'relay-0', time: '2026-12-06T12:00:00.000Z', attempt: 0, tags: ['t'] });
    expect(events[2]).toMatchObject({ bounce: { type: 'permanent', category: 'suppressed' }, reply: { enhancedCode: '5.1.1' } });
    expect(arrivalEvents({ ...env, handedOverFrom: 'LQ0PEER0001' }, ctx).map((e) => [e.type, e.handoff])).toEqual([['handed_over', { originQueueId: 'LQ0PEER0001' }], ['handed_over', { originQueueId: 'LQ0PEER0001' }]]);
  });

  it('an attempt: delivered, deferred with its retry time, bounced or expired with their kind', () => {
    const r = { address: 'a@dest.test', expired: false, remoteMta: 'mx.dest.test' };
    expect(attemptEvent(env, ctx, { ...r, result: 'delivered', reply: '250 2.0.0 queued as X', statusCode: '2.0.0' }, 1)).toMatchObject({ type: 'delivered', attempt: 1, reply: { code: 250, enhancedCode: '2.0.0', remoteMta: 'mx.dest.test' } });
    expect(attemptEvent(env, ctx, { ...r, result: 'deferred', reply: '451 4.7.1 later', statusCode: '4.7.1', retryAt: ctx.now + 60_000 }, 2)).toMatchObject({ type: 'deferred', retryAt: '2026-12-06T12:01:00.000Z' });
    expect(attemptEvent(env, ctx, { ...r, result: 'bounced', reply: '552 5.2.2 mailbox full', statusCode: '5.2.2' }, 1)).toMatchObject({ type: 'bounced', bounce: { type: 'transient', category: 'mailbox_full' } });
    expect(attemptEvent(env, ctx, { ...r, result: 'bounced', expired: true, reply: 'message expired after 120 h', statusCode: '4.4.7' }, 9)).toMatchObject({ type: 'expired', bounce: { type: 'transient', category: 'expired' } });
  });

  it('bounce kinds follow the enhanced code, as the providers\' event schemas do', () => {
    expect(bounceOf('5.1.1', false)).toEqual({ type: 'permanent', category: 'invalid_recipient' });
    expect(bounceOf('5.1.10', false)).toEqual({ type: 'permanent', category: 'invalid_domain' });
    expect(bounceOf('5.2.1', false)).toEqual({ type: 'permanent', category: 'mailbox_disabled' });
    expect(bounceOf('5.3.4', false)).toEqual({ type: 'transient', category: 'message_too_large' });
    expect(bounceOf('5.7.1', false)).toEqual({ type: 'transient', category: 'policy' });
    expect(bounceOf('5.0.0', false)).toEqual({ type: 'permanent', category: 'general' });
    expect(bounceOf(undefined, false)).toEqual({ type: 'transient', category: 'general' });
  });

  it('replies without a code keep their text', () => {
    expect(replyOf('connection refused')).toEqual({ code: undefined, enhancedCode: undefined, text: 'connection refused', remoteMta: undefined });
  });

  it('a notice: one event per recipient it is about, its queue id and action', () => {
    const events = noticeEvents(env, ctx, { queueId: 'LQ1DSN00001', action: 'failed' }, ['b@dest.test']);
    expect(events).toMatchObject([{ type: 'notice_sent', recipient: 'b@dest.test', notice: { queueId: 'LQ1DSN00001', action: 'failed' } }]);
    expect(noticeEvents(env, ctx, { queueId: 'LQ1DSN00002', action: 'delayed' }, ['b@dest.test'])[0]!.id).not.toBe(events[0]!.id);
  });
});
