import { describe, expect, it } from 'vitest';
import { evictionCandidate, sessionTimeoutMs, underStress } from './crowding.js';
import { parseConfig } from '../config.js';

const limits = parseConfig({ hostname: 'r.test', spool: { dir: 'spool' }, listeners: [{ name: 'in', port: 0, tls: 'none', auth: 'none' }], delivery: { route: { type: 'file', dir: 'out' } } }, '/tmp', 'test').limits;

describe('evictionCandidate', () => {
  it('picks the session connected longest among those that never started and are not mid-command', () => {
    const s = (key: string, connectedAt: number, started = false, busy = false) => ({ key, connectedAt, started, busy });
    expect(evictionCandidate([s('a', 3), s('b', 1), s('c', 2)])).toBe('b');
    expect(evictionCandidate([s('old-but-sending', 0, true), s('busy', 1, false, true), s('idle', 5)])).toBe('idle');
    expect(evictionCandidate([s('x', 0, true), s('y', 1, false, true)])).toBeUndefined();
  });
});

describe('sessionTimeoutMs', () => {
  it('holds a session that has not started to limits.startTimeout, and shortens idle sessions under stress', () => {
    expect(sessionTimeoutMs(limits, { startedAt: 0, started: false }, false, 10_000)).toBe(limits.startTimeout * 1000 - 10_000);
    expect(sessionTimeoutMs(limits, { startedAt: 0, started: true }, false, 10_000)).toBe(limits.idleTimeout * 1000);
    expect(sessionTimeoutMs(limits, { startedAt: 0, started: true }, true, 10_000)).toBe(limits.stressIdleTimeout * 1000);
  });
});

describe('underStress', () => {
  it('is stress above 80% of maxConnections, not at it', () => {
    expect(underStress(80, 100)).toBe(false);
    expect(underStress(81, 100)).toBe(true);
  });
});
