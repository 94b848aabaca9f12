/**
 * The journal's writer: where small messages go from intake until their 250. A file per message
 * costs an open, a write, an fsync, a close, a rename and an unlink each, and the file system's
 * inode churn besides; most mail is delivered within a second of arriving. So messages are
 * appended to a segment file instead, and every message that arrived while the previous write
 * was on its way to the disk shares the next write (group commit, as databases do); the segment
 * is opened O_DSYNC, so a write returns only once its data is on disk, as write plus fdatasync
 * would. Nobody is answered before the write that covers their record has returned.
 *
 * The writer only appends: it never reads marks or deletes a segment. When it stops writing to a
 * segment it seals it and says so, once, with how many acknowledged records the segment holds
 * (`onSealed`); the queue side (relay/spool/journal-marks.ts) deletes a sealed segment once that many
 * of its records are done. It seals on size, on age, and after a quiet spell (sealDue), so a
 * segment lives about as long as the first delivery round of the mail in it, busy or quiet.
 * Record format and reading: relay/spool/journal-format.ts.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Envelope } from '../envelope.js';
import { encodeRecord, HEADER, segmentName, syncDir, type JournalLocation } from './journal-format.js';

/** A new segment after this many bytes. */
export const SEGMENT_BYTES = 16 * 1024 * 1024;
/** A new segment for a write this long after the segment's first one (a trickle must not keep one for hours). */
export const SEGMENT_MAX_AGE_MS = 10_000;
/** A segment with no append for this long is sealed (checked as often), so a quiet relay does not keep it. */
export const SEGMENT_IDLE_MS = 1000;
/** At most this much in one write (a burst must not make one huge segment that recovery reads whole). */
const BATCH_BYTES = 4 * 1024 * 1024;

/** The writer let go of a segment: it holds `records` acknowledged records; `refused` ones (a failed write) were never acknowledged. */
export interface SegmentSealed {
  segment: string;
  records: number;
  refused: string[];
}

/** Whether the segment in use is to be sealed: before the next write, and on a timer while quiet (pure: time is an argument). */
export function sealDue(s: { size: number; openedAt: number; lastWriteAt: number }, now: number): boolean {
  return s.size >= SEGMENT_BYTES || now - s.openedAt >= SEGMENT_MAX_AGE_MS || now - s.lastWriteAt >= SEGMENT_IDLE_MS;
}

interface Waiting {
  id: string;
  bytes: Buffer[];
  length: number;
  resolve: (location: JournalLocation) => void;
  reject: (err: Error) => void;
}

interface Segment {
  name: string;
  handle: fsp.FileHandle;
  size: number;
  openedAt: number;
  lastWriteAt: number;
  records: number;
  refused: string[];
}

export class JournalWriter {
  private active: Segment | undefined;
  private waiting: Waiting[] = [];
  private writing = false;
  /** Seals the segment in use once it is due while nothing is written (one timer per segment, not per write). */
  private idle: NodeJS.Timeout | undefined;
  private closed = false;

  /** `newName` makes a unique, time-ordered name for each new segment; `onSealed` hears of every segment let go. */
  constructor(
    readonly dir: string,
    private readonly newName: () => string,
    private readonly onSealed: (sealed: SegmentSealed) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Appends a message; resolves once it is on disk (after the fdatasync that covers it). */
  append(envelope: Envelope, body: Buffer): Promise<JournalLocation> {
    if (this.closed) return Promise.reject(new Error('the spool journal is closed'));
    const bytes = encodeRecord(envelope, body);
    return new Promise((resolve, reject) => {
      this.waiting.push({ id: envelope.id, bytes, length: bytes.reduce((n, b) => n + b.length, 0), resolve, reject });
      if (!this.writing) void this.writeLoop();
    });
  }

  /** Everything that arrived while the last batch was being written goes out in one write and one fdatasync. */
  private async writeLoop(): Promise<void> {
    this.writing = true;
    while (this.waiting.length) {
      let take = 0;
      for (let bytes = 0; take < this.waiting.length && (take === 0 || bytes + this.waiting[take]!.length <= BATCH_BYTES); take++) bytes += this.waiting[take]!.length;
      const batch = this.waiting.splice(0, take);
      let segment: Segment | undefined;
      try {
        segment = await this.segmentForWrite();
        const start = segment.size;
        const buf = Buffer.concat(batch.flatMap((w) => w.bytes));
        // O_DSYNC: each write returns once its data (and the size) is on disk, as write and
        // fdatasync would, in one trip to the thread pool instead of two.
        let written = 0;
        while (written < buf.length) {
          const { bytesWritten } = await segment.handle.write(buf, written, buf.length - written, start + written);
          written += bytesWritten;
        }
        segment.size = start + buf.length;
        segment.lastWriteAt = this.now();
        segment.records += batch.length;
        let offset = start;
        for (const w of batch) {
          w.resolve({ segment: segment.name, offset: offset + HEADER });
          offset += w.length;
        }
      } catch (err) {
        for (const w of batch) w.reject(err as Error);
        // After a failed write the file's tail cannot be trusted (a partial record, pages the
        // kernel dropped): no record goes after it. Its records were refused; the seal names
        // them, so the queue side marks them and a later start does not deliver them.
        if (segment) {
          segment.refused.push(...batch.map((w) => w.id));
          this.seal();
        }
      }
    }
    this.writing = false;
  }

  private async segmentForWrite(): Promise<Segment> {
    if (this.active && !sealDue(this.active, this.now())) return this.active;
    this.seal();
    const name = segmentName(this.newName());
    const { O_WRONLY, O_CREAT, O_EXCL, O_DSYNC } = fs.constants;
    const handle = await fsp.open(path.join(this.dir, name), O_WRONLY | O_CREAT | O_EXCL | O_DSYNC, 0o600);
    try {
      // The new name must survive a crash before any record in it is acknowledged.
      await syncDir(this.dir);
    } catch (err) {
      await handle.close().catch(() => undefined);
      await fsp.rm(path.join(this.dir, name), { force: true });
      throw err;
    }
    const now = this.now();
    this.active = { name, handle, size: 0, openedAt: now, lastWriteAt: now, records: 0, refused: [] };
    this.idle = setInterval(() => {
      if (!this.writing && this.active && sealDue(this.active, this.now())) this.seal();
    }, SEGMENT_IDLE_MS).unref();
    return this.active;
  }

  /** Lets go of the segment in use: no record goes into it again, and the queue side hears how many it holds. */
  private seal(): void {
    const segment = this.active;
    if (!segment) return;
    this.active = undefined;
    clearInterval(this.idle);
    void segment.handle.close().catch(() => undefined);
    this.onSealed({ segment: segment.name, records: segment.records, refused: segment.refused });
  }

  /**
   * Waits for the write in progress and closes the segment in use without sealing it: nobody
   * deletes it now, and the next start recovers it (sealed) with whatever is left in it.
   */
  async close(): Promise<void> {
    this.closed = true;
    while (this.writing) await new Promise((r) => setImmediate(r));
    // After the last write: a segment that write opened has its timer too.
    clearInterval(this.idle);
    await this.active?.handle.close().catch(() => undefined);
    this.active = undefined;
  }
}
