import { describe, expect, it } from 'vitest';
import { RateWindow } from './rate-limit.js';

describe('RateWindow', () => {
  it('allows `limit` per user in any minute, counts only what it allows, and frees a slot a minute after it was used', () => {
    const rate = new RateWindow();
    expect([rate.allow('app', 2, 0), rate.allow('app', 2, 10_000), rate.allow('app', 2, 20_000)]).toEqual([true, true, false]);
    expect(rate.allow('other', 2, 20_000)).toBe(true);
    expect(rate.allow('app', 2, 59_999)).toBe(false);
    expect(rate.allow('app', 2, 60_000)).toBe(true);
    expect(rate.allow('app', 2, 60_001)).toBe(false);
  });
});
