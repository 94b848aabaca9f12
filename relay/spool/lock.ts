/**
 * A spool belongs to one relay process: a second one would recover the first one's live
 * spool (emptying tmp/ under a message being received) and deliver its mail twice.
 *
 * Node has no flock, and a Kubernetes volume outlives the pod that held it, so the lock is a
 * lease in a file, as a Kubernetes Lease is: `<spool>/lock` names its holder (host, pid, a
 * random token) and the holder renews its mtime every few seconds. A lock is stale when its
 * holder stopped renewing it, or at once when the holder is a process of this host that no
 * longer runs (or has our own PID: a restarted container, where the relay is PID 1 again).
 * The file is replaced by rename, so a reader never sees half of it; when the volume is full
 * it is rewritten in place (it is padded to a fixed size, so that needs no new block).
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ErrorCodes, MailfleetError } from '../errors.js';
import { isOutOfSpace } from './spool.js';

/** A holder that has not renewed its lock for this long is gone. */
export const LOCK_LEASE_MS = 15_000;
const RENEW_MS = 5_000;
const LOCK_BYTES = 512;

export interface LockHolder {
  host: string;
  pid: number;
  token: string;
  /** When the holder took the lock (RFC 3339), for people reading the file. */
  since: string;
}

export type LockVerdict = { free: true; stale?: string } | { free: false; why: string };

/**
 * Whether we may take the spool (pure). `holder` is undefined when there is no lock file,
 * null when the file cannot be read as a lock (a write cut short by a full volume).
 */
export function lockVerdict(holder: LockHolder | null | undefined, ageMs: number, me: { host: string; pid: number }, running: (pid: number) => boolean): LockVerdict {
  if (holder === undefined) return { free: true };
  const renewed = `renewed ${Math.round(ageMs / 1000)} s ago`;
  if (ageMs >= LOCK_LEASE_MS) return { free: true, stale: holder ? `pid ${holder.pid} on ${holder.host} stopped renewing it (${renewed})` : `an unreadable lock (${renewed})` };
  if (!holder) return { free: false, why: `an unreadable lock ${renewed} (taken over once it is ${LOCK_LEASE_MS / 1000} s old)` };
  if (holder.host === me.host) {
    if (holder.pid === me.pid) return { free: true, stale: `pid ${holder.pid} on ${holder.host} is this process's own PID: an earlier run of this container` };
    if (!running(holder.pid)) return { free: true, stale: `pid ${holder.pid} on ${holder.host} no longer runs` };
  }
  return { free: false, why: `pid ${holder.pid} on ${holder.host} (since ${holder.since}, ${renewed})` };
}

function processRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parseHolder(text: string): LockHolder | null {
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    return typeof h.host === 'string' && Number.isInteger(h.pid) && typeof h.token === 'string' ? (h as LockHolder) : null;
  } catch {
    return null;
  }
}

async function readLock(file: string): Promise<{ holder: LockHolder | null | undefined; ageMs: number }> {
  try {
    const [text, st] = await Promise.all([fsp.readFile(file, 'utf8'), fsp.stat(file)]);
    return { holder: parseHolder(text), ageMs: Math.max(0, Date.now() - st.mtimeMs) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { holder: undefined, ageMs: 0 };
    throw err;
  }
}

export interface SpoolLock {
  /** Why the spool is held without a lock file ('' when the lock is held normally). */
  readonly unlocked: string;
  /** Stops renewing and removes the lock, if it is still ours. */
  release(): Promise<void>;
}

export interface LockEvents {
  /** The lock is held by another host: waiting to see whether its holder renews it. */
  waiting?: (holder: string) => void;
  /** A stale lock was taken over (why it was stale). */
  tookOver?: (stale: string) => void;
  /** Another process replaced our lock: two relays now share the spool. */
  lost?: (holder: LockHolder | null) => void;
}

/** Takes the spool's lock (waiting out a remote holder's lease) or throws MF_SPOOL_LOCKED naming the holder. */
export async function lockSpool(dir: string, events: LockEvents = {}, opts: { me?: { host: string; pid: number }; leaseWaitMs?: number } = {}): Promise<SpoolLock> {
  const me = opts.me ?? { host: os.hostname(), pid: process.pid };
  const file = path.join(dir, 'lock');
  const mine: LockHolder = { host: me.host, pid: me.pid, token: crypto.randomBytes(12).toString('hex'), since: new Date().toISOString() };
  const content = JSON.stringify(mine).padEnd(LOCK_BYTES - 1) + '\n';
  let { holder, ageMs } = await readLock(file);
  let verdict = lockVerdict(holder, ageMs, me, processRunning);
  // A holder on another host (a pod replaced after a crash, its volume attached here) may be
  // gone without a trace: wait out its lease rather than crash-loop. One on this host that
  // runs is alive for sure.
  const waitUntil = Date.now() + (opts.leaseWaitMs ?? LOCK_LEASE_MS + 2 * RENEW_MS);
  if (!verdict.free && holder?.host !== me.host) events.waiting?.(verdict.why);
  while (!verdict.free && holder?.host !== me.host && Date.now() < waitUntil) {
    await new Promise((r) => setTimeout(r, 1000));
    ({ holder, ageMs } = await readLock(file));
    verdict = lockVerdict(holder, ageMs, me, processRunning);
  }
  if (!verdict.free) {
    throw new MailfleetError(ErrorCodes.SPOOL_LOCKED, `spool ${dir} is in use by ${verdict.why}`, 'stop the other relay, or give this one a spool.dir of its own');
  }
  try {
    const tmp = `${file}.${mine.token}`;
    try {
      await fsp.writeFile(tmp, content);
      await fsp.rename(tmp, file);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      if (!isOutOfSpace(err) || holder === undefined) throw err;
      // A full volume: the old lock file's block takes the new holder.
      const handle = await fsp.open(file, 'r+');
      try {
        await handle.write(content, 0);
      } finally {
        await handle.close();
      }
    }
  } catch (err) {
    // No room even for the lock: run without one (a full spool must still be delivered from).
    if (isOutOfSpace(err)) return { unlocked: `no room on the volume for ${file}`, release: async () => undefined };
    throw new MailfleetError(ErrorCodes.SPOOL_UNAVAILABLE, `cannot write the spool lock ${file}: ${(err as Error).message}`, 'mount a writable volume there, or set spool.dir');
  }
  // Two relays that found the same stale lock both wrote theirs: the one whose lock stayed goes on.
  const after = await readLock(file);
  if (after.holder?.token !== mine.token) {
    throw new MailfleetError(ErrorCodes.SPOOL_LOCKED, `spool ${dir} was taken by ${after.holder ? `pid ${after.holder.pid} on ${after.holder.host}` : 'another process'} while this one started`, 'stop the other relay, or give this one a spool.dir of its own');
  }
  if (verdict.stale) events.tookOver?.(verdict.stale);

  let lost = false;
  const renew = async () => {
    const now = await readLock(file).catch(() => undefined);
    if (!now || now.holder?.token !== mine.token) {
      if (!lost) events.lost?.(now?.holder ?? null);
      lost = true;
      return;
    }
    const t = new Date();
    await fsp.utimes(file, t, t);
  };
  const timer = setInterval(() => void renew().catch(() => undefined), RENEW_MS);
  timer.unref();
  return {
    unlocked: '',
    release: async () => {
      clearInterval(timer);
      const now = await readLock(file).catch(() => undefined);
      if (now?.holder?.token === mine.token) await fsp.rm(file, { force: true });
    },
  };
}
