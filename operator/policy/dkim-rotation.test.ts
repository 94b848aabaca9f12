import { describe, expect, it } from 'vitest';
import { senderDomainSpecSchema, type DkimKeyStatus } from '../api/v1alpha1.js';
import { planRotation } from './dkim-rotation.js';

const DAY = 86400_000;
const t0 = new Date('2026-01-01T00:00:00Z');
const plus = (ms: number) => new Date(t0.getTime() + ms);
const spec = (over: object = {}) => senderDomainSpecSchema.parse({ domain: 'example.com', dkim: { rotation: { period: '30d', overlap: '7d' } }, ...over });
const states = (keys: DkimKeyStatus[]) => keys.map((k) => `${k.selector}:${k.state}`);

describe('DKIM rotation', () => {
  it('walks a whole rotation: first keys sign at once, the next waits for DNS and its TTL, the old stays through the overlap', () => {
    const served = new Set<string>();
    const step = (keys: DkimKeyStatus[], now: Date) => planRotation({ spec: spec(), keys, served: (s) => served.has(s), now, propagationSeconds: 300 });

    const first = step([], t0);
    expect(states(first.keys)).toEqual(['mailfleet-1-rsa:active', 'mailfleet-1-ed:active']);
    expect(first.create.map((c) => c.selector)).toEqual(['mailfleet-1-rsa', 'mailfleet-1-ed']);
    expect(first.events.map((e) => e.reason)).toEqual(['KeyCreated', 'KeyCreated']);
    expect(first.nextStepAt).toEqual(plus(30 * DAY));

    // Nothing to do before the period ends, however often the controller asks.
    const quiet = step(first.keys, plus(29 * DAY));
    expect(quiet.create).toEqual([]);
    expect(quiet.events).toEqual([]);
    expect(quiet.keys).toEqual(first.keys);

    const rotating = step(first.keys, plus(30 * DAY));
    expect(states(rotating.keys)).toEqual(['mailfleet-1-rsa:active', 'mailfleet-1-ed:active', 'mailfleet-2-rsa:next', 'mailfleet-2-ed:next']);
    expect(rotating.create.map((c) => c.selector)).toEqual(['mailfleet-2-rsa', 'mailfleet-2-ed']);
    expect(rotating.waitingForDns).toEqual(['mailfleet-2-rsa', 'mailfleet-2-ed']);

    // DNS does not serve the new records yet: signing stays with the old keys, for days if need be.
    const waiting = step(rotating.keys, plus(33 * DAY));
    expect(states(waiting.keys)).toEqual(states(rotating.keys));
    expect(waiting.waitingForDns).toEqual(['mailfleet-2-rsa', 'mailfleet-2-ed']);

    served.add('mailfleet-2-rsa').add('mailfleet-2-ed');
    const seen = step(waiting.keys, plus(34 * DAY));
    expect(seen.events.map((e) => e.reason)).toEqual(['RecordServed', 'RecordServed']);
    expect(states(seen.keys)).toEqual(states(rotating.keys));
    expect(seen.nextStepAt).toEqual(plus(34 * DAY + 300_000));

    const switched = step(seen.keys, plus(34 * DAY + 300_000));
    expect(states(switched.keys)).toEqual(['mailfleet-1-rsa:retiring', 'mailfleet-1-ed:retiring', 'mailfleet-2-rsa:active', 'mailfleet-2-ed:active']);
    expect(switched.events.map((e) => e.reason)).toEqual(['SigningSwitched', 'SigningSwitched']);
    expect(switched.remove).toEqual([]);

    const overlapEnds = plus(41 * DAY + 300_000);
    expect(step(switched.keys, new Date(overlapEnds.getTime() - 1)).remove).toEqual([]);
    const retired = step(switched.keys, overlapEnds);
    expect(retired.remove).toEqual(['mailfleet-1-rsa', 'mailfleet-1-ed']);
    expect(states(retired.keys)).toEqual(['mailfleet-2-rsa:active', 'mailfleet-2-ed:active']);
    expect(retired.nextStepAt).toEqual(plus(64 * DAY + 300_000));
  });

  it('never rotates without a period, and retires an algorithm the spec no longer wants', () => {
    const keys = planRotation({ spec: spec({ dkim: {} }), keys: [], served: () => true, now: t0, propagationSeconds: 300 }).keys;
    expect(planRotation({ spec: spec({ dkim: {} }), keys, served: () => true, now: plus(400 * DAY), propagationSeconds: 300 }).create).toEqual([]);
    const edOnly = planRotation({ spec: spec({ dkim: { keyType: 'ed25519' } }), keys, served: () => true, now: plus(DAY), propagationSeconds: 300 });
    expect(states(edOnly.keys)).toEqual(['mailfleet-1-rsa:retiring', 'mailfleet-1-ed:active']);
    expect(edOnly.create).toEqual([]);
  });

  it('a lost key is replaced under a new selector, never the published one', () => {
    const keys = planRotation({ spec: spec(), keys: [], served: () => true, now: t0, propagationSeconds: 300 }).keys;
    const withoutEd = keys.filter((k) => k.algorithm === 'rsa-sha256');
    const again = planRotation({ spec: spec(), keys: withoutEd, served: () => true, now: plus(DAY), propagationSeconds: 300 });
    expect(again.create).toEqual([{ selector: 'mailfleet-2-ed', algorithm: 'ed25519-sha256' }]);
  });

  it('a Secret lost with all its keys is replaced under new selectors, never the published ones', () => {
    const first = planRotation({ spec: spec(), keys: [], served: () => true, now: t0, propagationSeconds: 300 }).keys;
    const again = planRotation({ spec: spec(), keys: [], served: () => true, now: plus(DAY), propagationSeconds: 300, usedSelectors: first.map((k) => k.selector) });
    expect(again.create.map((c) => c.selector)).toEqual(['mailfleet-2-rsa', 'mailfleet-2-ed']);
  });
});
