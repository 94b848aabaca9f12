import { describe, expect, it } from 'vitest';
import { signatureHeader, verifySignature } from './signature.js';

const body = '{"version":1,"events":[]}';
const oldKey = { id: 'k-old', secret: 'o'.repeat(40) };
const newKey = { id: 'k-new', secret: 'n'.repeat(40) };

describe('webhook signatures', () => {
  it('signs with every key, so a receiver that knows either verifies (rotation)', () => {
    const header = signatureHeader(body, 1_765_000_000, [oldKey, newKey]);
    expect(header).toMatch(/^t=1765000000;k-old=[0-9a-f]{64};k-new=[0-9a-f]{64}$/);
    expect(verifySignature(header, body, [newKey], 1_765_000_010)).toEqual({ ok: true, keyId: 'k-new' });
    expect(verifySignature(header, body, [oldKey], 1_765_000_010)).toEqual({ ok: true, keyId: 'k-old' });
  });

  it('refuses a changed body, an unknown key, an old or missing timestamp, and no header', () => {
    const header = signatureHeader(body, 1_765_000_000, [oldKey]);
    expect(verifySignature(header, body.replace('1', '2'), [oldKey], 1_765_000_000)).toMatchObject({ ok: false, reason: 'no signature by a known key matches' });
    expect(verifySignature(header, body, [newKey], 1_765_000_000)).toMatchObject({ ok: false });
    expect(verifySignature(header, body, [oldKey], 1_765_000_301)).toMatchObject({ ok: false, reason: expect.stringMatching(/more than 300 s/) });
    expect(verifySignature(header.replace(/^t=\d+;/, ''), body, [oldKey], 1_765_000_000)).toMatchObject({ ok: false, reason: 'no timestamp (t=)' });
    // The timestamp is signed: moving it forward breaks the signature.
    expect(verifySignature(header.replace('t=1765000000', 't=1765000100'), body, [oldKey], 1_765_000_100)).toMatchObject({ ok: false });
    expect(verifySignature(undefined, body, [oldKey], 0)).toMatchObject({ ok: false, reason: 'no Mailfleet-Signature header' });
  });
});
