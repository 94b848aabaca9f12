/**
 * The journal's files on disk and how they are read: segment records, `.done` mark files,
 * the scan a recovery starts from, and the helpers that touch them at recovery. Pure format
 * and reading; the writer (relay/spool/journal-writer.ts) and the done marks
 * (relay/spool/journal-marks.ts) hold no format knowledge of their own beyond encodeRecord.
 *
 * Record: 'MFJ1', body length, envelope length, CRC-32 of both (big-endian u32), the body,
 * the envelope as JSON. One write is on its way at a time, so a crash can cut short only the
 * last record of a segment: a record that fails its checks with nothing valid after it is that
 * torn write (never acknowledged). Valid records after a bad stretch mean damage, not a torn
 * write: the records on both sides count, and the segment is reported.
 *
 * Marks: `<segment>.done` holds one id a line. Every write starts with a newline, so a line a
 * crash cut short cannot swallow the next mark; a last line without its newline marks nothing.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import type { Envelope } from '../envelope.js';

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

/** What a recovery knows of one segment: every valid record in it, and how many are marked done. */
export interface SegmentCount {
  segment: string;
  records: number;
  done: number;
}

export interface JournalScan {
  /** The records not marked done. */
  records: JournalRecord[];
  /** Every segment file found, with its counts. */
  segments: SegmentCount[];
  /** Records cut short by a crash during their write, at a segment's end (never acknowledged). */
  torn: number;
  /** Segments with damage before their end (not a torn write): their valid records still count. */
  damaged: string[];
}

const MAGIC = 0x4d464a31; // 'MFJ1'
const MAGIC_BYTES = Buffer.from('MFJ1');
export const HEADER = 16;

export const segmentName = (stamp: string) => `${stamp}.log`;
export const doneName = (segment: string) => `${segment.slice(0, -4)}.done`;

export function encodeRecord(envelope: Envelope, body: Buffer): Buffer[] {
  const json = Buffer.from(JSON.stringify(envelope));
  const header = Buffer.alloc(HEADER);
  header.writeUInt32BE(MAGIC, 0);
  header.writeUInt32BE(body.length, 4);
  header.writeUInt32BE(json.length, 8);
  header.writeUInt32BE(crc32(json, crc32(body)), 12);
  return [header, body, json];
}

export function closeQuietly(fd: number | undefined): void {
  if (fd === undefined) return;
  try {
    fs.closeSync(fd);
  } catch {
    // Nothing to do: the marks it held are written or will be written again.
  }
}

/** Reads every segment: the records not marked done, without their bodies, and each segment's counts. Changes nothing. */
export async function scanJournal(dir: string): Promise<JournalScan> {
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
    const live = segment.records.filter((r) => !done.has(r.envelope.id));
    out.segments.push({ segment: name, records: segment.records.length, done: segment.records.length - live.length });
    out.torn += segment.torn;
    if (segment.damaged) out.damaged.push(name);
    out.records.push(...live);
  }
  return out;
}

/** Appends marks straight to the segments' .done files (at recovery, before the queue starts). */
export async function markOnDisk(dir: string, marks: [string, string][]): Promise<void> {
  const bySegment = new Map<string, string[]>();
  for (const [segment, id] of marks) bySegment.set(segment, [...(bySegment.get(segment) ?? []), id]);
  for (const [segment, ids] of bySegment) await fsp.appendFile(path.join(dir, doneName(segment)), `\n${ids.join('\n')}\n`);
}

/** Deletes a segment: its file first, then its marks (marks without their segment mean nothing). */
export async function removeSegment(dir: string, name: string): Promise<void> {
  await fsp.rm(path.join(dir, name), { force: true });
  await fsp.rm(path.join(dir, doneName(name)), { force: true });
}

/** Deletes finished segments and marks files whose segment is gone (at recovery, before anything is appended). */
export async function removeFinished(dir: string, finished: string[]): Promise<void> {
  for (const name of finished) await removeSegment(dir, name);
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const logs = new Set(names.filter((n) => n.endsWith('.log')));
  for (const n of names) if (n.endsWith('.done') && !logs.has(`${n.slice(0, -5)}.log`)) await fsp.rm(path.join(dir, n), { force: true });
}

async function readDone(file: string): Promise<Set<string>> {
  try {
    const text = await fsp.readFile(file, 'latin1');
    // A last line without its newline was cut short: it marks nothing.
    return new Set(text.split('\n').slice(0, -1).filter(Boolean));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
    throw err;
  }
}

/**
 * The segment's valid records (see the file comment for torn writes and damage). The segment
 * is read whole (at most one segment's size and one batch): one read instead of two per
 * record. Undefined when the file is gone.
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
