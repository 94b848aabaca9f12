/**
 * The events' outbox in the spool (`<spool>/events/`): what the webhooks have not taken yet
 * survives a crash, a restart and a drain. One log for all webhooks, each reading it at its own
 * place (Kafka's consumer offsets): segments of JSON lines (`00000001.jsonl`...), appended by
 * the queue thread only, and `cursors.json`, where each webhook is up to.
 *
 * An event is appended (one write(2), before the queue records the progress the event tells
 * of) and so outlives a killed process; it is not fsynced, so a power cut may lose the last
 * ones, as it may lose the relay's unsynced done marks and repeat those deliveries, which then
 * make the same events again with the same ids. A cursor moves only after its webhook answered
 * 2xx, so a crash repeats a batch rather than losing it: at least once, de-duplicated by id.
 *
 * The outbox never makes intake wait: past maxBytes the oldest segment is dropped, counted for
 * every webhook that had not read it.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { RelayEvent } from './event.js';

/** Where a webhook is: the next line to read is line `line` of segment `segment`, at byte `offset`. */
export interface OutboxCursor {
  segment: number;
  offset: number;
  line: number;
}

export interface OutboxBatch {
  events: RelayEvent[];
  /** Lines read past that held no event (torn at a crash): skipped, and counted. */
  unreadable: number;
  /** Where the webhook is once this batch is taken. */
  end: OutboxCursor;
}

interface Segment {
  seq: number;
  file: string;
  /** Bytes and lines written; for the segment being appended to, what this process appended. */
  bytes: number;
  lines: number;
}

export interface OutboxOptions {
  maxBytes: number;
  /** Told how many events a webhook lost to the size limit. */
  onDropped?: (webhook: string, events: number) => void;
  onError?: (err: Error) => void;
}

/** The outbox's directory in the spool. */
export const EVENTS_DIR = 'events';
const SEGMENT = /^(\d{8})\.jsonl$/;
const CURSORS = 'cursors.json';
/** A segment is closed at this size (or a quarter of maxBytes), so dropping and deleting go in steps. */
const SEGMENT_MAX = 16 * 1024 * 1024;

export class EventOutbox {
  private readonly segments: Segment[] = [];
  private readonly cursors = new Map<string, OutboxCursor>();
  private fd = -1;

  private constructor(
    readonly dir: string,
    private readonly options: OutboxOptions,
  ) {}

  /** Opens the outbox for these webhooks: a webhook new here starts at the end, one no longer named is forgotten. */
  static open(dir: string, webhooks: readonly string[], options: OutboxOptions): EventOutbox {
    fs.mkdirSync(dir, { recursive: true });
    const outbox = new EventOutbox(dir, options);
    for (const name of fs.readdirSync(dir).sort()) {
      const m = SEGMENT.exec(name);
      if (!m) continue;
      const file = path.join(dir, name);
      const data = fs.readFileSync(file);
      // A last line without its newline was torn by a crash: it still counts as a line (skipped when read).
      let lines = 0;
      for (let i = data.indexOf(10); i !== -1; i = data.indexOf(10, i + 1)) lines++;
      if (data.length && data[data.length - 1] !== 10) lines++;
      outbox.segments.push({ seq: Number(m[1]), file, bytes: data.length, lines });
    }
    let saved: Record<string, OutboxCursor> = {};
    try {
      saved = JSON.parse(fs.readFileSync(path.join(dir, CURSORS), 'utf8')) as Record<string, OutboxCursor>;
    } catch {
      // None yet (or torn): every webhook starts at the end.
    }
    outbox.startSegment();
    for (const name of webhooks) outbox.cursors.set(name, outbox.valid(saved[name]) ?? outbox.endCursor());
    outbox.collect();
    outbox.saveCursors();
    return outbox;
  }

  /** The webhooks now configured (a reload): a new one starts at the end, one no longer named is forgotten. */
  setWebhooks(webhooks: readonly string[]): void {
    for (const name of this.cursors.keys()) if (!webhooks.includes(name)) this.cursors.delete(name);
    for (const name of webhooks) if (!this.cursors.has(name)) this.cursors.set(name, this.endCursor());
    this.collect();
    this.saveCursors();
  }

  setMaxBytes(maxBytes: number): void {
    this.options.maxBytes = maxBytes;
    this.enforceLimit();
  }

  /** Appends events for every webhook; never throws (a failed write is reported and its events lost). */
  append(events: readonly RelayEvent[]): void {
    if (!events.length || this.cursors.size === 0) return;
    const data = Buffer.from(events.map((e) => JSON.stringify(e)).join('\n') + '\n');
    try {
      if (this.current.bytes >= Math.min(SEGMENT_MAX, this.options.maxBytes / 4)) this.startSegment();
      fs.writeSync(this.fd, data);
      this.current.bytes += data.length;
      this.current.lines += events.length;
    } catch (err) {
      this.options.onError?.(err as Error);
      for (const name of this.cursors.keys()) this.options.onDropped?.(name, events.length);
      return;
    }
    this.enforceLimit();
  }

  /** Up to `max` events for `webhook` from its place (or `from`) on, those `wanted` says it takes; undefined when it is at the end. */
  async read(webhook: string, max: number, wanted: (e: RelayEvent) => boolean = () => true, from?: OutboxCursor): Promise<OutboxBatch | undefined> {
    let at = from ?? this.cursors.get(webhook);
    if (!at || this.atEnd(at)) return undefined;
    const events: RelayEvent[] = [];
    let unreadable = 0;
    while (events.length < max && !this.atEnd(at)) {
      const segment = this.segments.find((s) => s.seq === at!.segment);
      if (!segment || at.line >= segment.lines) {
        const next = this.segments.find((s) => s.seq > at!.segment);
        if (!next) break;
        at = { segment: next.seq, offset: 0, line: 0 };
        continue;
      }
      const length = Math.min(segment.bytes - at.offset, 1024 * 1024);
      const handle = await fsp.open(segment.file, 'r');
      let chunk: Buffer;
      try {
        chunk = Buffer.alloc(length);
        await handle.read(chunk, 0, length, at.offset);
      } finally {
        await handle.close();
      }
      let start = 0;
      let offset: number = at.offset;
      let line: number = at.line;
      while (events.length < max && line < segment.lines) {
        let nl = chunk.indexOf(10, start);
        // The last line of a closed segment may lack its newline (torn); anything else needs a longer read.
        if (nl === -1 && offset + (chunk.length - start) === segment.bytes && segment !== this.current) nl = chunk.length;
        if (nl === -1) break;
        const text = chunk.subarray(start, nl).toString('utf8');
        offset += nl - start + 1;
        line++;
        start = nl + 1;
        try {
          const e = JSON.parse(text) as RelayEvent;
          if (wanted(e)) events.push(e);
        } catch {
          unreadable++;
        }
      }
      at = { segment: segment.seq, offset: Math.min(offset, segment.bytes), line };
    }
    return { events, unreadable, end: at };
  }

  /** The webhook took everything before `end`. */
  ack(webhook: string, end: OutboxCursor): void {
    if (!this.cursors.has(webhook)) return;
    this.cursors.set(webhook, end);
    this.collect();
    this.saveCursors();
  }

  /** Events the webhook has not passed yet (those it filters out included). */
  backlog(webhook: string): number {
    const at = this.cursors.get(webhook);
    if (!at) return 0;
    let n = 0;
    for (const s of this.segments) if (s.seq >= at.segment) n += s.seq === at.segment ? s.lines - at.line : s.lines;
    return n;
  }

  close(): void {
    if (this.fd !== -1) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private get current(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  private atEnd(at: OutboxCursor): boolean {
    return at.segment === this.current.seq && at.line >= this.current.lines;
  }

  private endCursor(): OutboxCursor {
    return { segment: this.current.seq, offset: this.current.bytes, line: this.current.lines };
  }

  /** A saved cursor that still points into the outbox; one whose segment was deleted starts at the oldest left. */
  private valid(c: OutboxCursor | undefined): OutboxCursor | undefined {
    if (!c || !Number.isSafeInteger(c.segment) || !Number.isSafeInteger(c.offset) || !Number.isSafeInteger(c.line)) return undefined;
    const segment = this.segments.find((s) => s.seq === c.segment);
    if (segment) return c.offset <= segment.bytes && c.line <= segment.lines ? c : undefined;
    const next = this.segments.find((s) => s.seq > c.segment);
    return next ? { segment: next.seq, offset: 0, line: 0 } : undefined;
  }

  /** Every start appends to a new segment: a line torn by a crash stays at the end of the old one. */
  private startSegment(): void {
    if (this.fd !== -1) fs.closeSync(this.fd);
    const seq = (this.segments.length ? this.current.seq : 0) + 1;
    const file = path.join(this.dir, `${String(seq).padStart(8, '0')}.jsonl`);
    this.fd = fs.openSync(file, 'a');
    this.segments.push({ seq, file, bytes: 0, lines: 0 });
  }

  /** Deletes the segments every webhook has passed (and, with no webhook, all but the one being appended to). */
  private collect(): void {
    const oldest = Math.min(...[...this.cursors.values()].map((c) => c.segment), this.current.seq);
    while (this.segments.length > 1 && this.segments[0]!.seq < oldest) this.unlink(this.segments.shift()!);
  }

  /** Past maxBytes the oldest segment goes, and each webhook that had not read it hears how many events it lost. */
  private enforceLimit(): void {
    let total = this.segments.reduce((n, s) => n + s.bytes, 0);
    while (total > this.options.maxBytes && this.segments.length > 1) {
      const dropped = this.segments.shift()!;
      total -= dropped.bytes;
      const next = this.segments[0]!;
      for (const [name, c] of this.cursors) {
        if (c.segment > dropped.seq) continue;
        this.options.onDropped?.(name, dropped.lines - c.line);
        this.cursors.set(name, { segment: next.seq, offset: 0, line: 0 });
      }
      this.unlink(dropped);
      this.saveCursors();
    }
  }

  private unlink(s: Segment): void {
    try {
      fs.unlinkSync(s.file);
    } catch (err) {
      this.options.onError?.(err as Error);
    }
  }

  /** Written whole and renamed: a crash leaves the old cursors or the new, and either repeats at most a batch. */
  private saveCursors(): void {
    const file = path.join(this.dir, CURSORS);
    try {
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(Object.fromEntries(this.cursors)));
      fs.renameSync(`${file}.tmp`, file);
    } catch (err) {
      this.options.onError?.(err as Error);
    }
  }
}
