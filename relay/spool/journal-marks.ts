/**
 * The journal's done marks and the deletion of finished segments: the queue side's half of the
 * journal (the writer, relay/spool/journal-writer.ts, only appends).
 *
 * A finished message (delivered, bounced, handed over, or moved to a file of its own) is marked
 * done by appending its id to its segment's `.done` file, not synced: losing a mark can only
 * repeat a delivery, never lose one. A segment is deleted once the writer has sealed it and as
 * many of its records are done as the seal says it holds (segmentFinished). Only counts are
 * compared, so the order in which seals, entries and marks meet does not matter: a seal that
 * comes before the last of its segment's mail was handed over waits for those marks, and marks
 * that come before their segment's seal wait for it. Segments found at a start come with their
 * counts from the recovery, all sealed (the new writer never appends to an old segment).
 */
import fs from 'node:fs';
import path from 'node:path';
import { closeQuietly, doneName, removeSegment, type JournalLocation, type SegmentCount } from './journal-format.js';
import type { SegmentSealed } from './journal-writer.js';

export interface SegmentProgress {
  /** Acknowledged records in the segment, once it is sealed (undefined while the writer may still append). */
  records: number | undefined;
  /** Records marked done. */
  done: number;
}

/** A segment goes once it is sealed and every acknowledged record in it is done (pure). */
export function segmentFinished(p: SegmentProgress): boolean {
  return p.records !== undefined && p.done >= p.records;
}

interface Segment extends SegmentProgress {
  /** The segment's .done file, open for appending. */
  fd?: number;
  pending: string[];
}

export class JournalMarks {
  private readonly segments = new Map<string, Segment>();
  private flush: NodeJS.Immediate | undefined;
  private readonly deleting = new Set<Promise<void>>();

  constructor(readonly dir: string) {}

  private segment(name: string): Segment {
    let s = this.segments.get(name);
    if (!s) this.segments.set(name, (s = { records: undefined, done: 0, pending: [] }));
    return s;
  }

  /** The writer let go of a segment. Its refused records (a failed write) are marked, not counted: they were never handed over. */
  sealed(seal: SegmentSealed): void {
    const s = this.segment(seal.segment);
    s.records = seal.records;
    if (seal.refused.length) this.mark(s, seal.refused);
    this.maybeDelete(seal.segment, s);
  }

  /** Segments a recovery found: sealed, with the records already marked done on disk. */
  adopt(counts: SegmentCount[]): void {
    for (const c of counts) {
      const s = this.segment(c.segment);
      s.records = c.records;
      s.done += c.done;
      this.maybeDelete(c.segment, s);
    }
  }

  /** The message at this location is finished. */
  done(location: JournalLocation, id: string): void {
    const s = this.segment(location.segment);
    s.done++;
    if (!this.maybeDelete(location.segment, s)) this.mark(s, [id]);
  }

  private mark(s: Segment, ids: string[]): void {
    s.pending.push(...ids);
    this.flush ??= setImmediate(() => this.flushDone());
  }

  /**
   * Writes the pending done marks, one write per segment, each starting with a newline (see
   * relay/spool/journal-format.ts). A failed write keeps its marks for the next flush.
   *
   * The writes are synchronous: marks are not fsynced, so a write only copies a few hundred
   * bytes into the page cache, and that costs less than a trip through the thread pool
   * (this runs hundreds of times a second under load).
   */
  flushDone(): void {
    clearImmediate(this.flush);
    this.flush = undefined;
    for (const [name, s] of this.segments) {
      if (!s.pending.length) continue;
      const marks = s.pending;
      s.pending = [];
      const text = Buffer.from(`\n${marks.join('\n')}\n`);
      try {
        s.fd ??= fs.openSync(path.join(this.dir, doneName(name)), 'a', 0o600);
        for (let at = 0; at < text.length; ) at += fs.writeSync(s.fd, text, at);
      } catch {
        // Tried again with the next flush (a lost mark only repeats a delivery after a crash).
        closeQuietly(s.fd);
        s.fd = undefined;
        s.pending = marks.concat(s.pending);
      }
    }
  }

  /** A finished segment goes: its file first, then its marks. */
  private maybeDelete(name: string, s: Segment): boolean {
    if (!segmentFinished(s)) return false;
    this.segments.delete(name);
    closeQuietly(s.fd);
    const deletion = removeSegment(this.dir, name)
      .catch(() => undefined)
      .finally(() => this.deleting.delete(deletion));
    this.deleting.add(deletion);
    return true;
  }

  /** Writes every mark made so far and waits until every deletion begun is done. */
  async settle(): Promise<void> {
    this.flushDone();
    await Promise.all(this.deleting);
  }

  /** Writes pending marks and closes the files (at stop). */
  async close(): Promise<void> {
    await this.settle();
    for (const s of this.segments.values()) {
      closeQuietly(s.fd);
      s.fd = undefined;
    }
  }
}
