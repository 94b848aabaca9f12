import { describe, expect, it } from 'vitest';
import { Scheduler, type Unit } from './scheduler.js';

const opts = { maxConnections: 5, maxConnectionsPerDestination: 2, minBackoff: 60, maxBackoff: 3600, lifetime: 5 * 86400 };
let n = 0;
function unit(destination: string, now: number, over: Partial<Unit> = {}): Unit {
  n++;
  return { id: `m${n}/${destination}`, messageId: `m${n}`, destination, recipients: [`r@${destination}`], attempts: 0, dueAt: now, receivedAt: now, ...over };
}

describe('scheduler', () => {
  it('opens connections per destination up to its limit and only while ready units outnumber them', () => {
    const s = new Scheduler(opts);
    for (let i = 0; i < 5; i++) s.add(unit('a.test', 0), 0);
    s.add(unit('b.test', 0), 0);
    const opened = [s.openConnection(0), s.openConnection(0), s.openConnection(0), s.openConnection(0)];
    expect(opened.sort()).toEqual(['a.test', 'a.test', 'b.test', undefined].sort());
  });

  it('respects the total connection limit across destinations', () => {
    const s = new Scheduler({ ...opts, maxConnections: 3 });
    for (const d of ['a', 'b', 'c', 'd', 'e']) s.add(unit(`${d}.test`, 0), 0);
    expect([s.openConnection(0), s.openConnection(0), s.openConnection(0), s.openConnection(0)].filter(Boolean)).toHaveLength(3);
    s.closeConnection('a.test', 0);
    expect(s.openConnection(0)).toBeDefined();
  });

  it('defers on a temporary failure and makes the unit ready again after the backoff', () => {
    const s = new Scheduler(opts);
    const u = unit('a.test', 0);
    s.add(u, 0);
    expect(s.openConnection(1000)).toBe('a.test');
    const taken = s.take('a.test', 1000)!;
    const decision = s.decideAfterFailure(taken, 1000);
    expect(decision).toEqual({ kind: 'retry', at: 61_000 });
    s.defer(taken, 61_000, 1000);
    s.closeConnection('a.test', 1000);
    expect(s.stats(1000)).toMatchObject({ ready: 0, deferred: 1, inflight: 0 });
    s.tick(60_999);
    expect(s.openConnection(60_999)).toBeUndefined();
    s.tick(61_000);
    expect(s.stats(61_000)).toMatchObject({ ready: 1, deferred: 0 });
    expect(s.openConnection(61_000)).toBe('a.test');
    expect(s.take('a.test', 61_000)!.attempts).toBe(1);
  });

  it('doubles the backoff from about a minute up to about an hour', () => {
    const s = new Scheduler(opts);
    expect([1, 2, 3, 4, 5, 6, 7, 8, 20].map((f) => s.backoffSeconds(f))).toEqual([60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
  });

  it('never schedules a retry past the lifetime and expires a unit that failed after it', () => {
    const s = new Scheduler({ ...opts, lifetime: 100 });
    const u = unit('a.test', 0, { attempts: 5 });
    expect(s.decideAfterFailure(u, 50_000)).toEqual({ kind: 'retry', at: 100_000 });
    expect(s.decideAfterFailure(u, 100_000)).toEqual({ kind: 'expired' });
  });

  it('reports ready, deferred and in-flight counts and the age of the oldest due unit', () => {
    const s = new Scheduler(opts);
    s.add(unit('a.test', 1000), 1000);
    s.add(unit('a.test', 5000), 5000);
    s.add(unit('b.test', 0, { dueAt: 99_000 }), 5000);
    s.openConnection(11_000);
    s.take('a.test', 11_000);
    expect(s.stats(11_000)).toEqual({ ready: 1, deferred: 1, inflight: 1, oldestReadySeconds: 6, overdueSeconds: 0 });
  });

  it('drains a dead destination without touching the others', () => {
    const s = new Scheduler(opts);
    s.add(unit('dead.test', 0), 0);
    s.add(unit('dead.test', 0), 0);
    s.add(unit('live.test', 0), 0);
    const drained = s.drainDestination('dead.test');
    expect(drained.map((u) => u.destination)).toEqual(['dead.test', 'dead.test']);
    expect(s.stats(0)).toMatchObject({ ready: 1, inflight: 2 });
  });

  it('orders deferred units by due time however they were added', () => {
    const s = new Scheduler(opts);
    const times = [50, 10, 40, 20, 30, 60, 5];
    for (const t of times) s.add(unit(`d${t}.test`, 0, { dueAt: t }), 0);
    const seen: number[] = [];
    for (let now = 0; now <= 60; now++) {
      const before = s.stats(now).ready;
      s.tick(now);
      if (s.stats(now).ready > before) seen.push(now);
    }
    expect(seen).toEqual([...times].sort((a, b) => a - b));
    expect(s.nextDueAt(60)).toBeUndefined();
  });

  describe('providers (MX rollup)', () => {
    const providerOf: Record<string, string> = { 'gmail.com': 'gmail', 'corp-on-google.test': 'gmail', 'small.test': 'small.test' };
    const limits: Record<string, { maxConnections?: number; messagesPerMinute?: number }> = { gmail: { maxConnections: 3, messagesPerMinute: 60 } };
    const grouped = (over = {}) => new Scheduler({ ...opts, maxConnections: 100, maxConnectionsPerDestination: 10, groupOf: (d) => providerOf[d], groupLimits: (g) => limits[g], ...over });

    it('domains whose MX hosts belong to one provider share its connection limit', () => {
      const s = grouped();
      for (let i = 0; i < 5; i++) for (const d of ['gmail.com', 'corp-on-google.test', 'small.test']) s.add(unit(d, 0), 0);
      const opened: string[] = [];
      for (let d = s.openConnection(0); d; d = s.openConnection(0)) opened.push(d);
      expect(opened.filter((d) => d !== 'small.test')).toHaveLength(3);
      expect(opened.filter((d) => d === 'small.test')).toHaveLength(5);
      s.closeConnection('gmail.com', 0);
      expect(s.openConnection(0)).not.toBe('small.test');
    });

    it('hands a provider no more than its rate: ten seconds of burst, then one message per interval', () => {
      const s = grouped();
      for (let i = 0; i < 20; i++) s.add(unit('gmail.com', 0), 0);
      expect(s.openConnection(0)).toBe('gmail.com');
      let taken = 0;
      while (s.take('gmail.com', 0)) taken++;
      expect(taken).toBe(10);
      expect(s.readyFor('gmail.com', 0)).toBe(0);
      expect(s.nextDueAt(0)).toBe(1000);
      expect(s.stats(0)).toMatchObject({ ready: 0, deferred: 10 });
      expect(s.take('gmail.com', 999)).toBeUndefined();
      expect(s.take('gmail.com', 1000)).toBeDefined();
    });

    it("gives a provider back each connection opened under it, when a domain's group changes while its connections are open", () => {
      // corp.test was Google's, then its classification failed (it is its own group for a while).
      let corpGroup = 'gmail';
      const s = new Scheduler({ ...opts, maxConnections: 100, maxConnectionsPerDestination: 10, groupOf: (d) => (d === 'corp.test' ? corpGroup : 'gmail'), groupLimits: (g) => (g === 'gmail' ? { maxConnections: 1 } : undefined) });
      for (const d of ['corp.test', 'corp.test', 'corp.test', 'gmail.com']) s.add(unit(d, 0), 0);
      expect(s.openConnection(0)).toBe('corp.test');
      expect(s.take('corp.test', 0)).toBeDefined();
      expect(s.openConnection(0)).toBeUndefined();
      corpGroup = 'corp.test';
      expect(s.openConnection(0)).toBe('corp.test');
      expect(s.take('corp.test', 0)).toBeDefined();
      s.closeConnection('corp.test', 0);
      s.closeConnection('corp.test', 0);
      // Google's one connection is free again: gmail.com may have it.
      const opened: string[] = [];
      for (let d = s.openConnection(0); d; d = s.openConnection(0)) opened.push(d);
      expect(opened).toContain('gmail.com');
    });

    it('a throttling provider pauses all its domains, not others, and its waiting mail is not counted as due', () => {
      const s = grouped();
      for (const d of ['gmail.com', 'corp-on-google.test', 'small.test']) s.add(unit(d, 0), 0);
      s.pauseGroup('gmail', 300_000, 0);
      const opened: string[] = [];
      for (let d = s.openConnection(0); d; d = s.openConnection(0)) opened.push(d);
      expect(opened).toEqual(['small.test']);
      expect(s.stats(0)).toMatchObject({ ready: 1, deferred: 2 });
      expect(s.nextDueAt(0)).toBe(300_000);
      expect(s.openConnection(300_000)).toBeDefined();
    });

    it('a destination whose provider is not known yet gets no connection until it is', () => {
      const known: Record<string, string> = {};
      const s = grouped({ groupOf: (d: string) => known[d] });
      s.add(unit('new.test', 0), 0);
      expect(s.unclassified()).toEqual(['new.test']);
      expect(s.openConnection(0)).toBeUndefined();
      known['new.test'] = 'new.test';
      expect(s.unclassified()).toEqual([]);
      expect(s.openConnection(0)).toBe('new.test');
    });
  });
});

describe('scheduler: times that are not numbers', () => {
  it('a unit whose due time is NaN does not hold back the deferred units behind it: it is tried now and reported', () => {
    const reported: string[][] = [];
    const s = new Scheduler({ ...opts, onInvalidUnit: (_u, fields) => reported.push(fields) });
    s.add(unit('later.test', 0, { dueAt: 60_000 }), 0);
    s.add(unit('poison.test', 0, { dueAt: NaN }), 0);
    s.add(unit('soon.test', 0, { dueAt: 30_000 }), 0);
    expect(reported).toEqual([['dueAt=NaN']]);
    expect(s.readyFor('poison.test', 0)).toBe(1);
    s.tick(61_000);
    expect(s.readyFor('soon.test', 61_000)).toBe(1);
    expect(s.readyFor('later.test', 61_000)).toBe(1);
    expect(s.stats(61_000)).toMatchObject({ deferred: 0, overdueSeconds: 0 });
  });

  it('repairs an infinite due time, a NaN acceptance time and a NaN attempt count, so backoff and lifetime still apply', () => {
    const reported: string[][] = [];
    const s = new Scheduler({ ...opts, onInvalidUnit: (_u, fields) => reported.push(fields) });
    s.add(unit('a.test', 0, { dueAt: Infinity, receivedAt: NaN, attempts: NaN }), 5000);
    expect(reported).toEqual([['dueAt=Infinity', 'receivedAt=NaN', 'attempts=NaN']]);
    s.openConnection(5000);
    const u = s.take('a.test', 5000)!;
    expect(s.decideAfterFailure(u, 6000)).toEqual({ kind: 'retry', at: 66_000 });
    expect(s.decideAfterFailure(u, 5000 + opts.lifetime * 1000)).toEqual({ kind: 'expired' });
    // A retry time that is not a number, from a caller's bug, comes back at once, not never.
    s.defer(u, NaN, 6000);
    expect(s.readyFor('a.test', 6000)).toBe(1);
    expect(s.nextDueAt(6000)).toBeUndefined();
  });

  it('ignores a provider pause until a time that is not a number', () => {
    const s = new Scheduler({ ...opts, groupOf: (d) => d });
    s.add(unit('a.test', 0), 0);
    s.pauseGroup('a.test', NaN, 0);
    expect(s.openConnection(0)).toBe('a.test');
  });

  it('refuses a clock that is not a number', () => {
    expect(() => new Scheduler(opts).add(unit('a.test', 0), NaN)).toThrow(RangeError);
  });

  it('reports how far past its due time the most overdue deferred unit is (0 while the scheduler keeps up)', () => {
    const s = new Scheduler(opts);
    s.add(unit('a.test', 0, { dueAt: 10_000 }), 0);
    s.add(unit('b.test', 0, { dueAt: 20_000 }), 0);
    expect(s.stats(5000).overdueSeconds).toBe(0);
    // Nobody ticked: both are due and still deferred.
    expect(s.stats(310_000)).toMatchObject({ deferred: 2, overdueSeconds: 300 });
    s.tick(310_000);
    expect(s.stats(310_000)).toMatchObject({ deferred: 0, ready: 2, overdueSeconds: 0 });
  });
});
