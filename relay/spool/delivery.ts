/**
 * The spool's queue side: everything about a message after intake handed it over. It reads
 * bodies (memory, the journal or the message's file), records per-recipient progress in state
 * files, moves mail that stays out of the journal into a file of its own, stores DSNs, removes
 * finished messages, and writes the journal's done marks and deletes finished segments
 * (relay/spool/journal-marks.ts). One object per spool on the queue's side, fed by the queue's
 * messages (relay/queue/runtime.ts); the writer side (relay/spool/intake.ts) never does any of this.
 *
 * Durability: a message moving out of the journal is durable in its file (fsynced, q/ fsynced)
 * before its journal record is marked done; a removal takes the message file first, so a crash
 * leaves only a stale state file; state files and done marks are not synced (losing one can
 * only repeat a delivery).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Envelope } from '../envelope.js';
import { journalBodyStream, syncDir, type JournalLocation, type SegmentCount } from './journal-format.js';
import { JournalMarks } from './journal-marks.js';
import type { SegmentSealed } from './journal-writer.js';
import { writeState } from './file.js';
import { BODY_CACHE_BYTES, DirSyncer, type SpoolEntry, type SpoolLayout } from './layout.js';
import { storeFile, type WriterTarget } from './writer.js';

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}

export class SpoolDelivery {
  private readonly marks: JournalMarks;
  private readonly target: WriterTarget;
  private cachedBytes = 0;

  constructor(readonly layout: SpoolLayout) {
    this.marks = new JournalMarks(layout.journalDir);
    const syncer = new DirSyncer(() => syncDir(layout.queueDir));
    // No free-space account: the queue's own writes (notices, mail that stays) are never refused.
    this.target = { layout, syncQueueDir: () => syncer.sync() };
  }

  /** The writer let go of a segment (a message from the main thread). */
  sealed(seal: SegmentSealed): void {
    this.marks.sealed(seal);
  }

  /** The segments a recovery found, with their counts (part of the queue's start). */
  adopt(segments: SegmentCount[]): void {
    this.marks.adopt(segments);
  }

  /** A journal message is finished. */
  journalDone(location: JournalLocation, id: string): void {
    this.marks.done(location, id);
  }

  /** Takes room in the body cache; false when it is full (the body is then read from disk). */
  reserveCache(bytes: number): boolean {
    if (this.cachedBytes + bytes > BODY_CACHE_BYTES) return false;
    this.cachedBytes += bytes;
    return true;
  }

  /** Stores a whole message in a file of its own (DSNs) and resolves when it is durable. */
  store(envelope: Omit<Envelope, 'id'> & { id?: string }, body: Buffer): Promise<SpoolEntry> {
    return storeFile(this.target, envelope, body);
  }

  /**
   * Records per-recipient progress and retry timing (atomic replace, no fsync). A journal
   * message first moves to a file of its own, fsynced, so that segments hold only mail in its
   * first delivery round.
   */
  async saveState(entry: SpoolEntry): Promise<void> {
    if (entry.location) return this.moveOutOfJournal(entry);
    entry.hasState = true;
    await writeState(this.layout.statePath(entry.envelope.id), entry.envelope);
  }

  private async moveOutOfJournal(entry: SpoolEntry): Promise<void> {
    const location = entry.location!;
    const body = await this.readBody(entry);
    // Durable in its new place before the journal lets go of it.
    await this.store(entry.envelope, body);
    entry.location = undefined;
    entry.hasState = false;
    this.journalDone(location, entry.envelope.id);
  }

  openBody(entry: SpoolEntry): Readable {
    if (entry.body) return Readable.from([entry.body]);
    if (entry.bodyLength === 0) return Readable.from([]);
    if (entry.location) return journalBodyStream(this.layout.journalDir, entry.location, entry.bodyLength);
    return fs.createReadStream(this.layout.messagePath(entry.envelope.id), { start: 0, end: entry.bodyLength - 1 });
  }

  async readBody(entry: SpoolEntry, limit = entry.bodyLength): Promise<Buffer> {
    if (entry.body) return entry.body.subarray(0, limit);
    const file = entry.location ? path.join(this.layout.journalDir, entry.location.segment) : this.layout.messagePath(entry.envelope.id);
    const handle = await fsp.open(file, 'r');
    try {
      const buf = Buffer.alloc(Math.min(limit, entry.bodyLength));
      await handle.read(buf, 0, buf.length, entry.location?.offset ?? 0);
      return buf;
    } finally {
      await handle.close();
    }
  }

  /** Removes a finished message: the message file first, so a crash leaves only a stale state file. */
  async remove(entry: SpoolEntry): Promise<void> {
    const id = entry.envelope.id;
    if (entry.body) {
      this.cachedBytes -= entry.body.length;
      entry.body = undefined;
    }
    if (entry.location) return this.journalDone(entry.location, id);
    await fsp.unlink(this.layout.messagePath(id)).catch(ignoreMissing);
    if (entry.hasState) await fsp.unlink(this.layout.statePath(id)).catch(ignoreMissing);
  }

  /** Writes every mark made so far and waits for the segment deletions begun (tests, stop). */
  settle(): Promise<void> {
    return this.marks.settle();
  }

  /** Writes pending done marks and closes their files (at stop). */
  close(): Promise<void> {
    return this.marks.close();
  }
}
