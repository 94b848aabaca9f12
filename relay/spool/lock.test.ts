import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LOCK_LEASE_MS, lockSpool, lockVerdict, type LockHolder } from './lock.js';

const holder = (over: Partial<LockHolder> = {}): LockHolder => ({ host: 'relay-a', pid: 40, token: 't', since: '2026-12-06T10:00:00.000Z', ...over });
const me = { host: 'relay-a', pid: 1 };
const alive = () => true;
const dead = () => false;

describe('lockVerdict', () => {
  it('is free without a lock, and refuses a holder that renews it', () => {
    expect(lockVerdict(undefined, 0, me, alive)).toEqual({ free: true });
    expect(lockVerdict(holder({ host: 'relay-b' }), 3000, me, dead)).toEqual({ free: false, why: 'pid 40 on relay-b (since 2026-12-06T10:00:00.000Z, renewed 3 s ago)' });
    expect(lockVerdict(holder(), 3000, me, alive)).toMatchObject({ free: false });
  });

  it('takes over a lock nobody renews, a dead process of this host, and our own PID from an earlier run', () => {
    expect(lockVerdict(holder({ host: 'relay-b' }), LOCK_LEASE_MS, me, alive)).toEqual({ free: true, stale: 'pid 40 on relay-b stopped renewing it (renewed 15 s ago)' });
    expect(lockVerdict(holder(), 1000, me, dead)).toEqual({ free: true, stale: 'pid 40 on relay-a no longer runs' });
    expect(lockVerdict(holder({ pid: 1 }), 1000, me, alive)).toMatchObject({ free: true, stale: expect.stringMatching(/own PID/) });
    // Another host's PID says nothing about this host's processes.
    expect(lockVerdict(holder({ host: 'relay-b' }), 1000, me, dead)).toMatchObject({ free: false });
  });

  it('waits out an unreadable lock before taking it', () => {
    expect(lockVerdict(null, 1000, me, alive)).toMatchObject({ free: false, why: expect.stringMatching(/unreadable lock/) });
    expect(lockVerdict(null, LOCK_LEASE_MS + 1, me, alive)).toMatchObject({ free: true });
  });
});

describe('lockSpool', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const tempDir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-lock-'));
    dirs.push(d);
    return d;
  };

  it('refuses a spool another host renews, takes it once the lease ran out, and lets go on release', async () => {
    const dir = tempDir();
    const other = await lockSpool(dir, {}, { me: { host: 'relay-b', pid: 7 } });
    await expect(lockSpool(dir, {}, { me: { host: 'relay-a', pid: 7 }, leaseWaitMs: 0 })).rejects.toThrow(/in use by pid 7 on relay-b/);
    const old = new Date(Date.now() - LOCK_LEASE_MS - 1000);
    fs.utimesSync(path.join(dir, 'lock'), old, old);
    const stale: string[] = [];
    const mine = await lockSpool(dir, { tookOver: (s) => stale.push(s) }, { me: { host: 'relay-a', pid: 7 } });
    expect(stale).toEqual([expect.stringMatching(/^pid 7 on relay-b stopped renewing it/)]);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'lock'), 'utf8'))).toMatchObject({ host: 'relay-a', pid: 7 });
    // The old holder's release leaves the new holder's lock alone.
    await other.release();
    expect(fs.existsSync(path.join(dir, 'lock'))).toBe(true);
    await mine.release();
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('waits out the lease of a holder on another host that no longer renews it (a pod replaced after a crash)', async () => {
    const dir = tempDir();
    await lockSpool(dir, {}, { me: { host: 'relay-b', pid: 7 } });
    const nearlyStale = new Date(Date.now() - LOCK_LEASE_MS + 1500);
    fs.utimesSync(path.join(dir, 'lock'), nearlyStale, nearlyStale);
    const events: string[] = [];
    const mine = await lockSpool(dir, { waiting: (h) => events.push(`waiting for ${h}`), tookOver: (s) => events.push(`took over: ${s}`) }, { me: { host: 'relay-a', pid: 7 } });
    expect(events).toEqual([expect.stringMatching(/^waiting for pid 7 on relay-b/), expect.stringMatching(/^took over: pid 7 on relay-b stopped renewing it/)]);
    await mine.release();
  });
});
