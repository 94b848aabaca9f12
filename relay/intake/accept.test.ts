import type { Session } from './smtp/session.js';
import { describe, expect, it } from 'vitest';
import { envelopeFor } from './accept.js';

const header = { length: 120, from: ['a@example.test'], otherOriginators: [], hasDate: true, messageId: '<m@x>' };

function session(s: { mailFrom: false | { address: string; args?: Record<string, string> }; rcptTo: object[]; user?: string }): Session {
  return { remoteAddress: '192.0.2.1', user: s.user, envelope: { mailFrom: s.mailFrom, rcptTo: s.rcptTo } } as unknown as Session;
}

describe('envelopeFor', () => {
  it('stores a logged-in client\'s message due at once, its recipients pending, 8BITMIME noted', () => {
    const e = envelopeFor(session({ mailFrom: { address: 'a@example.test', args: { BODY: '8bitmime' } }, rcptTo: [{ address: 'b@dest.test' }], user: 'app' }), { id: 'Q1', listener: 'submission', header, now: 5 });
    expect(e).toEqual({
      id: 'Q1',
      sender: 'a@example.test',
      recipients: [{ address: 'b@dest.test', status: 'pending' }],
      receivedAt: 5,
      listener: 'submission',
      client: '192.0.2.1',
      user: 'app',
      messageId: '<m@x>',
      eightBit: true,
      headerLength: 120,
      attempts: 0,
      nextAttemptAt: 5,
    });
  });

  it('stores a suppressed recipient (action bounce) as failed and not attempted, and the null sender as empty', () => {
    const suppressed = { senderDomain: 'example.test', recipient: 'gone@dest.test', since: 0, statusCode: '5.1.1', reply: '550 5.1.1 no such user' };
    const e = envelopeFor(session({ mailFrom: { address: '' }, rcptTo: [{ address: 'gone@dest.test', suppressed }, { address: 'b@dest.test' }] }), { id: 'Q2', listener: 'open', header, now: 5 });
    expect(e.sender).toBe('');
    expect(e.user).toBeUndefined();
    expect(e.eightBit).toBeUndefined();
    expect(e.recipients[0]).toMatchObject({ address: 'gone@dest.test', status: 'failed', statusCode: '5.1.1', lastReply: 'suppressed since 1970-01-01T00:00:00Z after a hard bounce (550 5.1.1 no such user); not attempted' });
    expect(e.recipients[1]).toEqual({ address: 'b@dest.test', status: 'pending' });
  });
});
