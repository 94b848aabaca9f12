import { describe, expect, it } from 'vitest';
import { refreshAt, TokenSource, type IssuedToken } from './token-source.js';

/** A token endpoint under the test's control: each request waits until the test answers it. */
function endpoint() {
  const waiting: { resolve: (t: IssuedToken) => void; reject: (e: Error) => void }[] = [];
  let issued = 0;
  return {
    fetch: () => new Promise<IssuedToken>((resolve, reject) => waiting.push({ resolve, reject })),
    answer(expiresIn = 3600) {
      waiting.shift()!.resolve({ accessToken: `token-${++issued}`, expiresIn });
    },
    fail(message = 'down') {
      waiting.shift()!.reject(new Error(message));
    },
    get waiting() {
      return waiting.length;
    },
  };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('TokenSource', () => {
  it('refreshes five minutes before expiry, or at half the lifetime of a short-lived token', () => {
    expect(refreshAt({ obtainedAt: 0, expiresAt: 3600_000 })).toBe(3300_000);
    expect(refreshAt({ obtainedAt: 1000, expiresAt: 5000 })).toBe(3000);
  });

  it('makes one request however many callers wait, and keeps the token until it is due for refresh', async () => {
    let now = 0;
    const e = endpoint();
    const source = new TokenSource(e.fetch, () => now);
    const callers = Array.from({ length: 100 }, () => source.token());
    await settle();
    expect(e.waiting).toBe(1);
    e.answer(3600);
    expect(new Set(await Promise.all(callers))).toEqual(new Set(['token-1']));
    now = 3299_000;
    expect(await source.token()).toBe('token-1');
    expect(source.requests).toBe(1);
    now = 3300_000;
    const refreshed = source.token();
    await settle();
    e.answer(3600);
    expect(await refreshed).toBe('token-2');
    expect(source.requests).toBe(2);
  });

  it('fetches anew when the smarthost refused the token, once for all who saw it refused', async () => {
    const e = endpoint();
    const source = new TokenSource(e.fetch, () => 0);
    const first = source.token();
    await settle();
    e.answer();
    expect(await first).toBe('token-1');
    const a = source.token('token-1');
    const b = source.token('token-1');
    await settle();
    expect(e.waiting).toBe(1);
    e.answer();
    expect([await a, await b]).toEqual(['token-2', 'token-2']);
    // A caller that comes late with the old refusal does not throw the new token away.
    expect(await source.token('token-1')).toBe('token-2');
    expect(source.requests).toBe(2);
  });

  it('keeps using a still-valid token when a refresh fails, and fails once it has expired', async () => {
    let now = 0;
    const e = endpoint();
    const source = new TokenSource(e.fetch, () => now);
    const first = source.token();
    await settle();
    e.answer(600);
    await first;
    now = 400_000; // past refreshAt (300 s), before expiry (600 s)
    const during = source.token();
    await settle();
    e.fail('connection refused');
    expect(await during).toBe('token-1');
    now = 600_000;
    const after = source.token();
    await settle();
    e.fail('connection refused');
    await expect(after).rejects.toThrow('connection refused');
    // The endpoint is back: the next caller gets a token.
    const back = source.token();
    await settle();
    e.answer();
    expect(await back).toBe('token-2');
  });
});
