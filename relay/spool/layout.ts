/**
 * The spool's directory and the names in it: q/ (a file per message that has one, and its
 * state), tmp/ (files being written: never acknowledged), corrupt/ (set aside at recovery), j/
 * (the journal); queue ids; what the queue holds of each message (SpoolEntry); and the
 * coalesced fsync of q/ that makes a renamed message file durable.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Envelope } from '../envelope.js';
import { ErrorCodes, MailfleetError } from '../errors.js';
import type { JournalLocation } from './journal-format.js';

export interface SpoolEntry {
  envelope: Envelope;
  bodyLength: number;
  /** A small body kept in memory from intake to delivery (bounded: see BODY_CACHE_BYTES). */
  body?: Buffer;
  /** Whether a state file exists beside the message (so removal need not look for one). */
  hasState?: boolean;
  /** Where the message is in the journal; absent for a message with a file of its own. */
  location?: JournalLocation;
}

/** Bodies up to this size stay in memory until delivered, up to BODY_CACHE_BYTES in all. */
export const CACHE_BODY_MAX = 256 * 1024;
/** Bodies up to this size go to the journal; larger ones to a file of their own. */
export const JOURNAL_MAX = 256 * 1024;
export const BODY_CACHE_BYTES = 64 * 1024 * 1024;

const ID_PREFIX = crypto.randomBytes(3).toString('hex').toUpperCase();
let idCounter = 0;

/** Time-ordered, unique across processes (random per-process prefix) and within one (counter). */
export function newQueueId(now = Date.now()): string {
  idCounter = (idCounter + 1) % 0x100000;
  return now.toString(36).toUpperCase() + ID_PREFIX + idCounter.toString(16).toUpperCase().padStart(5, '0');
}

/** The volume (or the user's quota on it) has no room left. */
export function isOutOfSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export class SpoolLayout {
  readonly queueDir: string;
  readonly tmpDir: string;
  readonly corruptDir: string;
  readonly journalDir: string;

  constructor(readonly dir: string) {
    this.queueDir = path.join(dir, 'q');
    this.tmpDir = path.join(dir, 'tmp');
    this.corruptDir = path.join(dir, 'corrupt');
    this.journalDir = path.join(dir, 'j');
  }

  messagePath(id: string): string {
    return path.join(this.queueDir, id);
  }

  statePath(id: string): string {
    return path.join(this.queueDir, `${id}.state`);
  }

  tmpPath(id: string): string {
    return path.join(this.tmpDir, id);
  }

  /**
   * Creates the layout and checks it is writable. A volume with no space left is not an
   * error: the relay must still start to deliver the mail that would free it (it takes no new
   * mail meanwhile: see relay/spool/space.ts). Resolves with whether the spool is full.
   */
  async open(): Promise<{ full: boolean }> {
    const probe = path.join(this.tmpDir, `.probe-${process.pid}`);
    try {
      for (const d of [this.queueDir, this.tmpDir, this.corruptDir, this.journalDir]) await fsp.mkdir(d, { recursive: true });
      await fsp.writeFile(probe, 'ok');
      return { full: false };
    } catch (err) {
      if (isOutOfSpace(err)) return { full: true };
      throw new MailfleetError(ErrorCodes.SPOOL_UNAVAILABLE, `spool directory ${this.dir} is not usable: ${(err as Error).message}`, 'mount a writable volume there, or set spool.dir');
    } finally {
      await fsp.rm(probe, { force: true }).catch(() => undefined);
    }
  }
}

/** Coalesces directory fsyncs: every caller waits for one fsync that began after it asked. */
export class DirSyncer {
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;

  constructor(private readonly run: () => Promise<void>) {}

  sync(): Promise<void> {
    if (!this.running) {
      this.running = this.run().finally(() => (this.running = null));
      return this.running;
    }
    // A sync is in flight and may have started before our rename: join the next one.
    // Whatever the running sync's outcome, the next one must still happen (a failed fsync
    // must not poison every later commit).
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.sync();
      });
    return this.queued;
  }
}
