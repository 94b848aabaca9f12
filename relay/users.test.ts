import { describe, expect, it } from 'vitest';
import { AuthThrottle, HashGate } from './users.js';

describe('HashGate', () => {
  it('runs at most `concurrency` at once, queues up to `queue`, and refuses the rest at once', async () => {
    const gate = new HashGate(() => ({ concurrency: 2, queue: 3 }));
    let running = 0;
    let most = 0;
    const releases: (() => void)[] = [];
    const work = () =>
      new Promise<string>((resolve) => {
        running++;
        most = Math.max(most, running);
        releases.push(() => {
          running--;
          resolve('done');
        });
      });
    const runs = Array.from({ length: 8 }, () => gate.run(work));
    // 2 running, 3 waiting, 3 refused without running.
    expect(await Promise.all(runs.slice(5))).toEqual([undefined, undefined, undefined]);
    expect(gate.load).toEqual({ running: 2, waiting: 3 });
    while (releases.length) {
      releases.shift()!();
      await new Promise((r) => setImmediate(r));
    }
    expect(await Promise.all(runs.slice(0, 5))).toEqual(Array(5).fill('done'));
    expect(most).toBe(2);
    expect(gate.load).toEqual({ running: 0, waiting: 0 });
  });
});

describe('AuthThrottle', () => {
  const limits = { perClient: 3, perUser: 5, windowMs: 60_000 };

  it('locks a client address after perClient failures until the window that began with the first one ends', () => {
    const t = new AuthThrottle(() => limits);
    for (let i = 0; i < 3; i++) {
      expect(t.locked('10.0.0.1', `u${i}`, 1000 + i)).toBeUndefined();
      t.failed('10.0.0.1', `u${i}`, 1000 + i);
    }
    expect(t.locked('10.0.0.1', 'anyone', 2000)).toBe('client');
    expect(t.locked('10.0.0.2', 'anyone', 2000)).toBeUndefined();
    expect(t.locked('10.0.0.1', 'anyone', 61_000)).toBeUndefined();
  });

  it('locks a user name after perUser failures, except from an address it logged in from within the window', () => {
    const t = new AuthThrottle(() => limits);
    t.succeeded('10.0.0.9', 'app', 0);
    for (let i = 0; i < 5; i++) t.failed(`192.0.2.${i}`, 'app', 1000);
    expect(t.locked('192.0.2.100', 'app', 2000)).toBe('user');
    expect(t.locked('10.0.0.9', 'app', 2000)).toBeUndefined();
    // The exemption lasts a window from the login.
    expect(t.locked('10.0.0.9', 'app', 60_500)).toBe('user');
  });

  it('keeps memory bounded under failures from ever new addresses and names', () => {
    const t = new AuthThrottle(() => limits);
    for (let i = 0; i < 30_000; i++) t.failed(`addr-${i}`, `user-${i}`, 0);
    const maps = t as unknown as { clients: Map<string, unknown>; users: Map<string, unknown> };
    expect(maps.clients.size).toBeLessThanOrEqual(10_000);
    expect(maps.users.size).toBeLessThanOrEqual(10_000);
  });
});
