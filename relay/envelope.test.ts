import { describe, expect, it } from 'vitest';
import { envelopeSchema, parseHandoffEnvelope } from './envelope.js';

const SIG = 'DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.test; s=a;\r\n\th=from:to:subject; bh=abc=;\r\n\tb=def=\r\n';

const good = (): Record<string, unknown> => ({
  sender: 'app@example.test',
  recipients: [
    { address: 'a@dest.test', status: 'pending' },
    { address: 'b@dest.test', status: 'failed', lastReply: '550-5.1.1 no such user\n550 5.1.1 really', statusCode: '5.1.1', remoteMta: 'mx.dest.test' },
  ],
  receivedAt: 1_700_000_000_000,
  listener: 'open',
  client: '10.0.0.7',
  messageId: '<m@example.test>',
  headerLength: 40,
  attempts: 2,
  nextAttemptAt: 1_700_000_060_000.25,
  dkimSignature: SIG,
  originId: 'LX1ABC00001',
});

const error = (value: unknown, bodyLength = 100) => {
  const r = parseHandoffEnvelope(value, bodyLength);
  return r.ok ? undefined : r.error;
};

describe('the handoff envelope schema', () => {
  it('takes what a relay sends: optional fields left out, a null sender, two DKIM signatures (two keys)', () => {
    expect(parseHandoffEnvelope(good(), 100)).toMatchObject({ ok: true, envelope: { recipients: [{ status: 'pending' }, { statusCode: '5.1.1' }] } });
    const { dkimSignature: _d, messageId: _m, ...minimal } = good();
    expect(error({ ...minimal, sender: '' })).toBeUndefined();
    expect(error({ ...good(), dkimSignature: SIG + SIG.replace('a=ed25519-sha256', 'a=rsa-sha256') })).toBeUndefined();
    expect(error({ ...good(), dkimSignature: '' })).toBeUndefined();
  });

  it.each([
    ['nextAttemptAt missing (the due time that stopped every retry)', { nextAttemptAt: undefined }, /^nextAttemptAt: /],
    ['nextAttemptAt not a number', { nextAttemptAt: 'soon' }, /^nextAttemptAt: /],
    ['nextAttemptAt null (NaN through JSON)', { nextAttemptAt: null }, /^nextAttemptAt: /],
    ['receivedAt beyond any date', { receivedAt: 1e300 }, /^receivedAt: /],
    ['a fractional attempt count', { attempts: 1.5 }, /^attempts: /],
    ['a retry time that is not finite (Infinity has no JSON: a string)', { nextAttemptAt: 'Infinity' }, /^nextAttemptAt: /],
    ['a retry time of NaN (a caller that skips JSON)', { nextAttemptAt: NaN }, /^nextAttemptAt: /],
    ['a retry time of Infinity', { nextAttemptAt: Infinity }, /^nextAttemptAt: /],
    ['a negative attempt count', { attempts: -1 }, /^attempts: /],
    ['a negative header length', { headerLength: -3 }, /^headerLength: /],
    ['a header longer than the message', { headerLength: 101 }, /^headerLength: 101 is beyond the message's 100 bytes/],
    ['no recipients', { recipients: [] }, /^recipients: /],
    ['a recipient as a bare string', { recipients: ['b@y.test'] }, /^recipients\.0: /],
    ['an unknown recipient status', { recipients: [{ address: 'a@d.test', status: 'bounced' }] }, /^recipients\.0\.status: /],
    ['a CRLF in a recipient (command injection)', { recipients: [{ address: 'a@d.test>\r\nRCPT TO:<x@evil.test', status: 'pending' }] }, /^recipients\.0\.address: must not contain CR, LF/],
    ['a NUL in the sender', { sender: 'a\u0000@example.test' }, /^sender: /],
    ['an address longer than any SMTP path', { sender: `${'a'.repeat(1000)}@example.test` }, /^sender: /],
    ['a LF in the Message-ID', { messageId: '<m@x>\nBcc: x@evil.test' }, /^messageId: /],
    ['a malformed status code', { recipients: [{ address: 'a@d.test', status: 'failed', statusCode: '5.1.1\r\nX' }] }, /^recipients\.0\.statusCode: /],
    ['an unknown field', { id: 'ABC', extra: 1 }, /^id: unknown field; extra: unknown field/],
    ['an unknown recipient field', { recipients: [{ address: 'a@d.test', status: 'pending', dsn: true }] }, /^recipients\.0\.dsn: unknown field/],
    ['a header field smuggled after the DKIM signature', { dkimSignature: SIG + 'Bcc: victim@evil.test\r\n' }, /^dkimSignature: /],
    ['a header field smuggled inside the DKIM signature', { dkimSignature: 'DKIM-Signature: v=1; b=x\r\nFrom: ceo@evil.test\r\n' }, /^dkimSignature: /],
    ['a DKIM signature that ends the header section', { dkimSignature: SIG + '\r\n' }, /^dkimSignature: /],
    ['a DKIM signature without its CRLF', { dkimSignature: 'DKIM-Signature: v=1; b=x' }, /^dkimSignature: /],
    ['another header field in place of a DKIM signature', { dkimSignature: 'Received: from evil\r\n' }, /^dkimSignature: /],
    ['a bare LF fold in the DKIM signature', { dkimSignature: 'DKIM-Signature: v=1;\n\tb=x\r\n' }, /^dkimSignature: /],
    ['a queue id that is not one', { originId: '../../etc' }, /^originId: /],
  ])('refuses %s, naming the field', (_what, change, message) => {
    expect(error({ ...good(), ...change })).toMatch(message);
  });

  it('refuses an envelope that is not an object', () => {
    expect(error('hello')).toMatch(/^\(envelope\): /);
    expect(error(null)).toMatch(/^\(envelope\): /);
  });

  it('is the spool envelope less its queue id: a handoff carries the sender\'s id as originId, never as id', () => {
    const { originId, ...carried } = good();
    expect(envelopeSchema.safeParse({ ...carried, id: originId }).success).toBe(true);
    expect(envelopeSchema.safeParse(carried).success).toBe(false);
    expect(error({ ...good(), id: 'LX1ABC00002' })).toBe('id: unknown field');
  });
});
