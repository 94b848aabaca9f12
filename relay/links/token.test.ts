import { describe, expect, it } from 'vitest';
import { linkToken, readLinkToken } from './token.js';

const KEY = 'k'.repeat(40);
const SUBJECT = { kind: 'u' as const, senderDomain: 'example.com', queueId: 'Q1ABC', recipient: 'first.last+tag@example.org' };

describe('link tokens', () => {
  it('read back what they were made from, with the same key', () => {
    const token = linkToken(SUBJECT, KEY);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    expect(readLinkToken(token, KEY)).toEqual(SUBJECT);
  });

  it('a recipient with odd characters (a newline cannot hide a second field)', () => {
    const odd = { ...SUBJECT, recipient: '"a\\nb|c"@example.org' };
    expect(readLinkToken(linkToken(odd, KEY), KEY)).toEqual(odd);
  });

  it('of each kind read back as that kind: a click with its URL, an open', () => {
    const click = { ...SUBJECT, kind: 'c' as const, url: 'https://shop.example.com/a?b=1&c=%20' };
    expect(readLinkToken(linkToken(click, KEY), KEY)).toEqual(click);
    expect(readLinkToken(linkToken({ ...SUBJECT, kind: 'o' }, KEY), KEY)).toEqual({ ...SUBJECT, kind: 'o' });
    // The label and the kind are signed: an unsubscribe token is not an open token.
    expect(readLinkToken(linkToken(SUBJECT, KEY), KEY)?.kind).toBe('u');
  });

  it('refuse another key, a changed payload, a changed MAC, a cut token and junk', () => {
    const token = linkToken(SUBJECT, KEY);
    const [payload, mac] = token.split('.') as [string, string];
    expect(readLinkToken(token, 'other'.repeat(8))).toBeUndefined();
    const altered = Buffer.from(Buffer.from(payload, 'base64url').toString().replace('first', 'other')).toString('base64url');
    expect(readLinkToken(`${altered}.${mac}`, KEY)).toBeUndefined();
    expect(readLinkToken(`${payload}.${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}`, KEY)).toBeUndefined();
    expect(readLinkToken(token.slice(0, -1), KEY)).toBeUndefined();
    expect(readLinkToken('', KEY)).toBeUndefined();
    expect(readLinkToken(`${'A'.repeat(2000)}.${mac}`, KEY)).toBeUndefined();
  });
});
