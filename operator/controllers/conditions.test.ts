import { describe, expect, it } from 'vitest';
import { setCondition, statusChanged } from './conditions.js';

describe('statusChanged', () => {
  it('sees no change when the API server hands the status back with its keys sorted', () => {
    const written = { observedGeneration: 1, conditions: [{ type: 'Ready', status: 'True', reason: 'Ready', message: 'ok' }], activeSelectors: 'a' };
    const stored = { activeSelectors: 'a', conditions: [{ message: 'ok', reason: 'Ready', status: 'True', type: 'Ready' }], observedGeneration: 1 };
    expect(statusChanged(stored, written)).toBe(false);
  });

  it('sees a changed value, a new field, and a reordered list', () => {
    const before = { conditions: [{ type: 'A', status: 'True' }, { type: 'B', status: 'False' }], n: 1 };
    expect(statusChanged(before, { ...before, n: 2 })).toBe(true);
    expect(statusChanged(before, { ...before, extra: 'x' })).toBe(true);
    expect(statusChanged(before, { ...before, conditions: [...before.conditions].reverse() })).toBe(true);
  });

  it('ignores the fields it is told to (a check time alone is not a change)', () => {
    expect(statusChanged({ lastVerifiedAt: '1', n: 1 }, { lastVerifiedAt: '2', n: 1 }, ['lastVerifiedAt'])).toBe(false);
  });
});

describe('setCondition', () => {
  it('moves lastTransitionTime only when the status changes', () => {
    const t1 = new Date('2026-01-01T00:00:00Z');
    const t2 = new Date('2026-01-02T00:00:00Z');
    const first = setCondition([], { type: 'Ready', status: 'False', reason: 'WaitingForDNS', message: 'a' }, t1);
    const same = setCondition(first, { type: 'Ready', status: 'False', reason: 'WaitingForDNS', message: 'b' }, t2);
    expect(same[0]!.lastTransitionTime).toBe(t1.toISOString());
    const flipped = setCondition(same, { type: 'Ready', status: 'True', reason: 'Ready', message: 'c' }, t2);
    expect(flipped[0]!.lastTransitionTime).toBe(t2.toISOString());
  });
});
