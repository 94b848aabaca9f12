/**
 * The spool's journal: where small messages live from their 250 until their first delivery
 * round ends. A file per message costs an open, a write, an fsync, a close, a rename and an
 * unlink each, and the file system's inode churn besides; most mail is delivered within a
 * second of arriving. So messages are appended to a segment file instead, and every message
 * that arrived while the previous write was on its way to the disk shares the next write
 * (group commit, as databases do); the segment is opened O_DSYNC, so a write returns only once
 * its data is on disk, as write plus fdatasync would. Nobody is answered before the write that
 * covers their record has returned.
 *
 * A finished message is marked done by appending its id to the segment's `.done` file (not
 * synced: losing a mark can only repeat a delivery, never lose one). A segment no longer
 * written to whose messages are all done is deleted. A message that needs to stay longer (a
 * deferral, a partial delivery) is moved out to a file of its own first (Spool.saveState), so
 * a segment never lives longer than the first attempts of the mail in it.
 *
 * Record: 'MFJ1', body length, envelope length, CRC-32 of both (big-endian u32), the body,
 * the envelope as JSON. A record that fails its checks at a segment's end is a torn write, never
 * acknowledged; damage before the end is reported and stepped over (see readSegment).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import type { Envelope } from './envelope.js';

export interface JournalLocation {
  /** The segment's file name in the journal directory. */
  segment: string;
  /** Where the body starts in that file. */
  offset: number;
}

export interface JournalRecord {
  envelope: Envelope;
  bodyLength: number;
  location: JournalLocation;
}

export interface JournalScan {
  records: JournalRecord[];
  /** Every segment file found. */
  segments: string[];
  /** Records cut short by a crash during their write, at a segment's end (never acknowledged). */
  torn: number;
  /** Segments with damage before their end (not a torn write): their valid records still count. */
  damaged: string[];
}

const MAGIC = 0x4d464a31; // 'MFJ1'
const MAGIC_BYTES = Buffer.from('MFJ1');
const HEADER = 16;
/** A new segment after this many bytes: old ones are deleted as soon as their mail is out. */
const SEGMENT_BYTES = 16 * 1024 * 1024;
/** At most this much in one write (a burst must not make one huge segment that recovery reads whole). */
const BATCH_BYTES = 4 * 1024 * 1024;
/** A segment in use whose mail is all out is let go past this size, so a quiet relay does not keep it. */
const IDLE_SEGMENT_BYTES = 1024 * 1024;

interface Waiting {
  id: string;
  bytes: Buffer[];
  length: number;
  resolve: (location: JournalLocation) => void;
  reject: (err: Error) => void;
}

interface Segment {
  name: string;
  handle?: fsp.FileHandle;
  size: number;
  /** Acknowledged records not yet done. */
  live: number;
  /** No more appends: deleted when live reaches 0. */
  sealed: boolean;
  /** The segment's .done file, open for appending. */
  doneFd?: number;
  pendingDone: string[];
}

const segmentName = (stamp: string) => `${stamp}.log`;
const doneName = (segment: string) => `${segment.slice(0, -4)}.done`;

function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    fs.closeSync(fd);
  } catch {
    // Nothing to do: the marks it held are written or will be written again.
  }
}

function encodeRecord(envelope: Envelope, body: Buffer): Buffer[] {
  const json = Buffer.from(JSON.stringify(envelope));
  const header = Buffer.alloc(HEADER);
  header.writeUInt32BE(MAGIC, 0);
  header.writeUInt32BE(body.length, 4);
  header.writeUInt32BE(json.length, 8);
  header.writeUInt32BE(crc32(json, crc32(body)), 12);
  return [header, body, json];
}

export class Journal {
  private readonly segments = new Map<string, Segment>();
  private active: Segment | undefined;
  private waiting: Waiting[] = [];
  private writing = false;
  private doneFlush: NodeJS.Immediate | undefined;
  private readonly deleting = new Set<Promise<void>>();
  private closed = false;

  /** `newName` makes a unique, time-ordered name for each new segment. */
  constructor(
    readonly dir: string,
    private readonly newName: () => string,
  ) {}

  /**
   * The live record counts a recovery found (at a start, or before a handoff at shutdown). A
   * segment this instance is not writing to is sealed: it goes once its count reaches 0.
   */
  adopt(counts: Map<string, number>): void {
    for (const [name, live] of counts) {
      const known = this.segments.get(name);
      if (known) known.live = live;
      else this.segments.set(name, { name, size: 0, live, sealed: true, pendingDone: [] });
    }
    for (const segment of [...this.segments.values()]) {
      if (counts.has(segment.name)) continue;
      segment.live = 0;
      this.maybeDelete(segment);
    }
  }

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
          const { bytesWritten } = await segment.handle!.write(buf, written, buf.length - written, start + written);
          written += bytesWritten;
        }
        segment.size = start + buf.length;
        segment.live += batch.length;
        let offset = start;
        for (const w of batch) {
          w.resolve({ segment: segment.name, offset: offset + HEADER });
          offset += w.length;
        }
      } catch (err) {
        for (const w of batch) w.reject(err as Error);
        // After a failed write the file's tail cannot be trusted (a partial record, pages the
        // kernel dropped): no record goes after it. Its records were refused; their marks keep a
        // later start from delivering them (unsynced: after a power loss one may still go, a
        // duplicate of what the client sends again).
        if (segment) {
          this.seal(segment);
          for (const w of batch) this.markDoneIn(segment, w.id, false);
        }
      }
    }
    this.writing = false;
  }

  private async segmentForWrite(): Promise<Segment> {
    if (this.active && this.active.size < SEGMENT_BYTES && !this.active.sealed) return this.active;
    if (this.active) this.seal(this.active);
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
    const segment: Segment = { name, handle, size: 0, live: 0, sealed: false, pendingDone: [] };
    this.segments.set(name, segment);
    this.active = segment;
    return segment;
  }

  private seal(segment: Segment): void {
    segment.sealed = true;
    if (this.active === segment) this.active = undefined;
    const handle = segment.handle;
    segment.handle = undefined;
    void handle?.close().catch(() => undefined);
    this.maybeDelete(segment);
  }

  /** The message at this location is finished (delivered, bounced, handed over, or moved to a file of its own). */
  markDone(location: JournalLocation, id: string): void {
    const segment = this.segments.get(location.segment);
    if (!segment) {
      // Not one of ours (another process's spool instance, or already deleted): mark it on disk.
      void Journal.markOnDisk(this.dir, [[location.segment, id]]).catch(() => undefined);
      return;
    }
    this.markDoneIn(segment, id, true);
  }

  private markDoneIn(segment: Segment, id: string, counted: boolean): void {
    if (counted) segment.live--;
    // The segment in use, all its mail out and past IDLE_SEGMENT_BYTES: the next write starts a
    // new one and this one goes (a quiet relay would otherwise keep it until it fills).
    if (segment === this.active && segment.live <= 0 && segment.size >= IDLE_SEGMENT_BYTES && !this.writing) {
      this.seal(segment);
      return;
    }
    if (this.maybeDelete(segment)) return;
    segment.pendingDone.push(id);
    this.doneFlush ??= setImmediate(() => this.flushDone());
  }

  /**
   * Writes the pending done marks, one write per segment. Each write starts with a newline:
   * a line a crash cut short in an earlier process must not swallow the next mark. A failed
   * write keeps its marks for the next flush.
   *
   * The writes are synchronous: marks are not fsynced, so a write only copies a few hundred
   * bytes into the page cache, and that costs less than a trip through the thread pool
   * (this runs hundreds of times a second under load).
   */
  flushDone(): void {
    clearImmediate(this.doneFlush);
    this.doneFlush = undefined;
    for (const segment of this.segments.values()) {
      if (!segment.pendingDone.length) continue;
      const marks = segment.pendingDone;
      segment.pendingDone = [];
      const text = Buffer.from(`\n${marks.join('\n')}\n`);
      try {
        segment.doneFd ??= fs.openSync(path.join(this.dir, doneName(segment.name)), 'a', 0o600);
        for (let at = 0; at < text.length; ) at += fs.writeSync(segment.doneFd, text, at);
      } catch {
        // Tried again with the next flush (a lost mark only repeats a delivery after a crash).
        closeQuietly(segment.doneFd);
        segment.doneFd = undefined;
        segment.pendingDone = marks.concat(segment.pendingDone);
      }
    }
  }

  /** Writes every mark made so far and waits until every deletion begun is done. */
  async settle(): Promise<void> {
    this.flushDone();
    await Promise.all(this.deleting);
  }

  /** A sealed segment with nothing live goes: its file first, then its marks. */
  private maybeDelete(segment: Segment): boolean {
    if (!segment.sealed || segment.live > 0) return false;
    this.segments.delete(segment.name);
    segment.pendingDone = [];
    closeQuietly(segment.doneFd);
    segment.doneFd = undefined;
    const deletion = (async () => {
      await fsp.rm(path.join(this.dir, segment.name), { force: true });
      await fsp.rm(path.join(this.dir, doneName(segment.name)), { force: true });
    })()
      .catch(() => undefined)
      .finally(() => this.deleting.delete(deletion));
    this.deleting.add(deletion);
    return true;
  }

  /** Waits for the write in progress, writes pending marks and closes the files. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.writing) await new Promise((r) => setImmediate(r));
    await this.settle();
    for (const segment of this.segments.values()) {
      await segment.handle?.close().catch(() => undefined);
      segment.handle = undefined;
      closeQuietly(segment.doneFd);
      segment.doneFd = undefined;
    }
  }

  /** Reads every segment: the records not marked done, without their bodies. Changes nothing. */
  static async scan(dir: string): Promise<JournalScan> {
    const out: JournalScan = { records: [], segments: [], torn: 0, damaged: [] };
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
      throw err;
    }
    for (const name of names.filter((n) => n.endsWith('.log')).sort()) {
      const done = await readDone(path.join(dir, doneName(name)));
      const segment = await readSegment(path.join(dir, name), name);
      // Deleted since the listing: all its mail was out.
      if (!segment) continue;
      out.segments.push(name);
      out.torn += segment.torn;
      if (segment.damaged) out.damaged.push(name);
      out.records.push(...segment.records.filter((r) => !done.has(r.envelope.id)));
    }
    return out;
  }

  /** Appends marks straight to the segments' .done files (at recovery), touching no counts. */
  static async markOnDisk(dir: string, marks: [string, string][]): Promise<void> {
    const bySegment = new Map<string, string[]>();
    for (const [segment, id] of marks) bySegment.set(segment, [...(bySegment.get(segment) ?? []), id]);
    for (const [segment, ids] of bySegment) await fsp.appendFile(path.join(dir, doneName(segment)), `\n${ids.join('\n')}\n`);
  }

  /** Deletes finished segments and marks files whose segment is gone (at recovery, before anything is appended). */
  static async removeFinished(dir: string, finished: string[]): Promise<void> {
    for (const name of finished) {
      await fsp.rm(path.join(dir, name), { force: true });
      await fsp.rm(path.join(dir, doneName(name)), { force: true });
    }
    const names = await fsp.readdir(dir).catch(() => [] as string[]);
    const logs = new Set(names.filter((n) => n.endsWith('.log')));
    for (const n of names) if (n.endsWith('.done') && !logs.has(`${n.slice(0, -5)}.log`)) await fsp.rm(path.join(dir, n), { force: true });
  }
}

async function readDone(file: string): Promise<Set<string>> {
  try {
    const text = await fsp.readFile(file, 'latin1');
    // A last line without its newline was cut short: it marks nothing. (Writes start with a
    // newline, so such a line never runs into the next mark.)
    return new Set(text.split('\n').slice(0, -1).filter(Boolean));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
    throw err;
  }
}

/**
 * The segment's valid records. One write is on its way at a time, so a crash can cut short only
 * the last: a record that fails its checks with nothing valid after it is that torn write
 * (never acknowledged). Valid records after a bad stretch mean damage, not a torn write: the
 * records on both sides count, and the segment is reported. The segment is read whole (at most
 * SEGMENT_BYTES and one batch): one read instead of two per record. Undefined when the file is
 * gone.
 */
async function readSegment(file: string, name: string): Promise<{ records: JournalRecord[]; torn: number; damaged: boolean } | undefined> {
  let data: Buffer;
  try {
    data = await fsp.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const records: JournalRecord[] = [];
  let damaged = false;
  let at = 0;
  while (at < data.length) {
    const found = recordAt(data, at, name);
    if (found) {
      records.push(found.record);
      at = found.end;
      continue;
    }
    // The next place a valid record starts, if any.
    let next = at;
    do next = data.indexOf(MAGIC_BYTES, next + 1);
    while (next >= 0 && !recordAt(data, next, name));
    if (next < 0) return { records, torn: 1, damaged };
    damaged = true;
    at = next;
  }
  return { records, torn: 0, damaged };
}

function recordAt(data: Buffer, at: number, name: string): { record: JournalRecord; end: number } | undefined {
  if (at + HEADER > data.length || data.readUInt32BE(at) !== MAGIC) return undefined;
  const bodyLength = data.readUInt32BE(at + 4);
  const jsonLength = data.readUInt32BE(at + 8);
  const end = at + HEADER + bodyLength + jsonLength;
  if (end > data.length) return undefined;
  const body = data.subarray(at + HEADER, at + HEADER + bodyLength);
  const json = data.subarray(at + HEADER + bodyLength, end);
  if (crc32(json, crc32(body)) !== data.readUInt32BE(at + 12)) return undefined;
  try {
    return { record: { envelope: JSON.parse(json.toString('utf8')) as Envelope, bodyLength, location: { segment: name, offset: at + HEADER } }, end };
  } catch {
    return undefined;
  }
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A readable stream of a journal message's body. */
export function journalBodyStream(dir: string, location: JournalLocation, length: number): fs.ReadStream {
  return fs.createReadStream(path.join(dir, location.segment), { start: location.offset, end: location.offset + length - 1 });
}
