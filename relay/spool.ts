/**
 * The durable spool. Nothing is acknowledged before it is on disk and fsynced (RFC 5321 6.1).
 *
 * Small messages (up to 256 KiB, nearly all mail) go to the journal (relay/journal.ts): appended
 * in groups that share one fdatasync, marked done when finished. Larger ones, and any message
 * that must stay past its first delivery round (deferred, partly delivered), have a file of
 * their own: the body followed by its envelope and a fixed-size trailer, written to tmp/,
 * fsynced, renamed into q/ and made durable by an fsync of q/. Per-recipient progress of such
 * a message lives in a small `<id>.state` file beside it; losing a state update can only
 * repeat a delivery (at least once), never lose one. Only envelopes are kept in memory: bodies
 * stream from disk.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { ErrorCodes, MailfleetError } from './errors.js';
import type { Envelope } from './envelope.js';
import { Journal, journalBodyStream, syncDir, type JournalLocation } from './journal.js';
import { FreeSpace } from './spool-space.js';

export type { Envelope, RecipientState, RecipientStatus } from './envelope.js';

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

const TRAILER_MAGIC = 'MFQ1';

class SpoolFileInvalid extends Error {}

/** The volume (or the user's quota on it) has no room left. */
export function isOutOfSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}
const TRAILER_LENGTH = 4 + 16 + 8 + 1; // magic, body length, envelope length (hex), newline

/** Bodies up to this size stay in memory until delivered, up to BODY_CACHE_BYTES in all. */
const CACHE_BODY_MAX = 256 * 1024;
/** Bodies up to this size go to the journal; larger ones to a file of their own. */
const JOURNAL_MAX = 256 * 1024;
const BODY_CACHE_BYTES = 64 * 1024 * 1024;

const ID_PREFIX = crypto.randomBytes(3).toString('hex').toUpperCase();
let idCounter = 0;

/** Time-ordered, unique across processes (random per-process prefix) and within one (counter). */
export function newQueueId(now = Date.now()): string {
  idCounter = (idCounter + 1) % 0x100000;
  return now.toString(36).toUpperCase() + ID_PREFIX + idCounter.toString(16).toUpperCase().padStart(5, '0');
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

/**
 * Receives one message's body. It stays in memory while it is small (the journal takes it);
 * past JOURNAL_MAX it goes to a file of its own as it arrives.
 */
export class SpoolWriter {
  private handle: fsp.FileHandle | undefined;
  /** Bytes handed to the file so far. */
  private flushed = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private closed = false;
  private released = false;
  /** Bytes this writer took from the spool's free-space account (see Spool.claimSpace). */
  private claimedBytes = 0;

  constructor(
    private readonly spool: Spool,
    readonly id: string,
    private readonly tmpPath: string,
  ) {}

  /** A write to the file under way (abort waits for it, or the file it opens would stay). */
  private flushing: Promise<void> | undefined;

  /** Takes a chunk; returns a promise only when the body outgrew the journal and went to its file. */
  write(chunk: Buffer): Promise<void> | undefined {
    this.spool.claimSpace(chunk.length);
    this.claimedBytes += chunk.length;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < JOURNAL_MAX) return undefined;
    const flush = (this.flushing ?? Promise.resolve()).then(() => this.flush());
    this.flushing = flush;
    void flush.then(
      () => this.flushing === flush && (this.flushing = undefined),
      () => this.flushing === flush && (this.flushing = undefined),
    );
    return flush;
  }

  private async flush(): Promise<void> {
    this.handle ??= await fsp.open(this.tmpPath, 'wx');
    const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    let offset = 0;
    while (offset < buf.length) {
      const { bytesWritten } = await this.handle.write(buf, offset, buf.length - offset, this.flushed);
      offset += bytesWritten;
      this.flushed += bytesWritten;
    }
  }

  get bodyLength(): number {
    return this.flushed + this.pendingBytes;
  }

  /** The whole body, when it stayed small enough for the journal (Spool.append); undefined once it went to a file. */
  smallBody(): Buffer | undefined {
    return this.flushed === 0 ? Buffer.concat(this.pending, this.pendingBytes) : undefined;
  }

  /**
   * Stores the message where it belongs and resolves once it is durable: the journal while the
   * body stayed small (group commit), else a file of its own. Its bytes count as on their way
   * to the volume until then (a journal write under way is not in a statfs yet).
   */
  async keep(envelope: Envelope): Promise<SpoolEntry> {
    const small = this.smallBody();
    if (!small) return this.commit(envelope);
    try {
      return await this.spool.append(envelope, small);
    } finally {
      this.release();
    }
  }

  /** Once: the spool no longer counts this body as on its way to the volume. */
  private release(): void {
    if (this.released) return;
    this.released = true;
    this.spool.releaseSpace(this.claimedBytes);
  }

  /** Writes the message to a file of its own: body, envelope, trailer; fsyncs file and directory. Resolves only when the message is durable. */
  async commit(envelope: Envelope): Promise<SpoolEntry> {
    const json = Buffer.from(JSON.stringify(envelope));
    const bodyLength = this.bodyLength;
    const trailer = Buffer.from(`${TRAILER_MAGIC}${bodyLength.toString(16).padStart(16, '0')}${json.length.toString(16).padStart(8, '0')}\n`);
    const body = this.flushed === 0 && bodyLength <= CACHE_BODY_MAX ? Buffer.concat(this.pending, bodyLength) : undefined;
    this.pending.push(json, trailer);
    try {
      await this.flush();
    } finally {
      this.release();
    }
    await this.handle!.sync();
    await this.handle!.close();
    this.closed = true;
    await fsp.rename(this.tmpPath, this.spool.messagePath(this.id));
    try {
      await this.spool.syncQueueDir();
    } catch (err) {
      // Not durable, so not acknowledged: take it back out, or a restart would deliver a
      // message the client was told to send again.
      await fsp.unlink(this.spool.messagePath(this.id)).catch(() => undefined);
      throw err;
    }
    // The queue decides whether to keep the body in memory (reserveCache).
    return { envelope, bodyLength, body };
  }

  /** Drops a message that will not be acknowledged. */
  async abort(): Promise<void> {
    this.release();
    this.pending = [];
    await this.flushing?.catch(() => undefined);
    if (!this.handle) return;
    if (!this.closed) {
      this.closed = true;
      await this.handle.close().catch(() => undefined);
    }
    await fsp.rm(this.tmpPath, { force: true });
  }
}

export interface RecoveryReport {
  entries: SpoolEntry[];
  discardedPartial: number;
  corrupt: string[];
  /** Live records per journal segment, for the instance that owns the journal (Spool.adoptJournal). */
  journalLive: [string, number][];
}

export interface SpoolOptions {
  /**
   * Free bytes to keep on the volume: a message whose bytes would go below it is refused
   * while it arrives (an SmtpRefusal, 452 4.3.1). Only the instance that takes mail sets it;
   * the queue's own writes (notices, deferred mail) are never refused.
   */
  minFreeBytes?: () => number;
  /**
   * Where journal messages are marked done, when another instance owns the journal (the queue
   * worker's spool tells the main thread's, which writes the journal). Default: this instance.
   */
  journalDone?: (location: JournalLocation, id: string) => void;
}

export class Spool {
  private readonly queueDir: string;
  private readonly tmpDir: string;
  private readonly corruptDir: string;
  private readonly journalDir: string;
  private readonly syncer: DirSyncer;
  /** Appends go here (only the main thread appends); marks for segments it does not know go to disk directly. */
  private readonly journal: Journal;
  private readonly space: FreeSpace;
  private cachedBytes = 0;

  constructor(
    readonly dir: string,
    private readonly options: SpoolOptions = {},
  ) {
    this.queueDir = path.join(dir, 'q');
    this.tmpDir = path.join(dir, 'tmp');
    this.corruptDir = path.join(dir, 'corrupt');
    this.journalDir = path.join(dir, 'j');
    this.syncer = new DirSyncer(() => syncDir(this.queueDir));
    this.journal = new Journal(this.journalDir, () => newQueueId());
    this.space = new FreeSpace(dir, () => options.minFreeBytes?.() ?? 0);
  }

  /**
   * Creates the layout and checks it is writable. A volume with no space left is not an
   * error: the relay must still start to deliver the mail that would free it (it takes no new
   * mail meanwhile: see freeBytes). Resolves with whether the spool is full.
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

  messagePath(id: string): string {
    return path.join(this.queueDir, id);
  }

  private statePath(id: string): string {
    return path.join(this.queueDir, `${id}.state`);
  }

  /** Takes room in the body cache; false when it is full (the body is then read from disk). */
  reserveCache(bytes: number): boolean {
    if (this.cachedBytes + bytes > BODY_CACHE_BYTES) return false;
    this.cachedBytes += bytes;
    return true;
  }

  syncQueueDir(): Promise<void> {
    return this.syncer.sync();
  }

  createWriter(id = newQueueId()): SpoolWriter {
    return new SpoolWriter(this, id, path.join(this.tmpDir, id));
  }

  /** Stores a small message in the journal; resolves once it is durable. */
  async append(envelope: Envelope, body: Buffer): Promise<SpoolEntry> {
    const location = await this.journal.append(envelope, body);
    return { envelope, bodyLength: body.length, body, location };
  }

  /** Stores a whole message in a file of its own (DSNs, handoff) and returns when it is durable. */
  async store(envelope: Omit<Envelope, 'id'> & { id?: string }, body: Buffer): Promise<SpoolEntry> {
    const writer = this.createWriter(envelope.id);
    try {
      await writer.write(body);
      return await writer.commit({ ...envelope, id: writer.id });
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  /**
   * Every message in the spool, as a restart would find it (files in q/ with their state, live
   * journal records), without their bodies. Changes nothing: safe beside a running relay.
   */
  async scan(): Promise<Omit<RecoveryReport, 'journalLive'> & { finishedSegments: string[]; shadowed: SpoolEntry[]; damagedSegments: string[] }> {
    const names = await fsp.readdir(this.queueDir);
    const ids = names.filter((n) => !n.endsWith('.state') && !n.endsWith('.state.tmp'));
    const withState = new Set(names.filter((n) => n.endsWith('.state')).map((n) => n.slice(0, -6)));
    const entries: SpoolEntry[] = [];
    const corrupt: string[] = [];
    // Many files at once: a restart with a large queue should not take minutes.
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < ids.length) {
          const id = ids[next++]!;
          try {
            entries.push(await this.readEntry(id, withState.has(id)));
          } catch (err) {
            // Gone since the listing: a running relay finished it (scan runs beside one).
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
            // Only a file that fails validation is set aside; another I/O error stops the start
            // (a restart retries) rather than hiding an acknowledged message in corrupt/.
            if (!(err instanceof SpoolFileInvalid)) throw err;
            corrupt.push(id);
          }
        }
      }),
    );
    const journal = await Journal.scan(this.journalDir);
    // A message moved out to its own file whose done mark was lost: the file is the newer copy
    // (only a file that could be read: a damaged one must not hide a good journal copy).
    const inFiles = new Set(entries.map((e) => e.envelope.id));
    const shadowed: SpoolEntry[] = [];
    for (const r of journal.records) {
      const entry = { envelope: r.envelope, bodyLength: r.bodyLength, location: r.location };
      (inFiles.has(r.envelope.id) ? shadowed : entries).push(entry);
    }
    const liveSegments = new Set(entries.map((e) => e.location?.segment));
    entries.sort((a, b) => a.envelope.receivedAt - b.envelope.receivedAt);
    return {
      entries,
      discardedPartial: journal.torn,
      corrupt,
      finishedSegments: journal.segments.filter((s) => !liveSegments.has(s)),
      shadowed,
      damagedSegments: journal.damaged,
    };
  }

  /**
   * Reads every stored message's envelope and tidies the spool for a start: half-written files
   * in tmp/ were never acknowledged and are discarded; unreadable queue files are moved to
   * corrupt/; finished journal segments are deleted. Then this instance counts the journal's
   * live records, so segments go once their mail is out.
   */
  async recover(): Promise<RecoveryReport> {
    // Marks made so far (and deletions begun) must be on disk, or a finished message would look live.
    await this.journal.settle();
    const tmp = await fsp.readdir(this.tmpDir);
    await Promise.all(tmp.map((f) => fsp.rm(path.join(this.tmpDir, f), { force: true })));
    const report = await this.scan();
    for (const id of report.corrupt) await fsp.rename(this.messagePath(id), path.join(this.corruptDir, id)).catch(() => undefined);
    // A copy of a damaged segment for whoever investigates; its valid records are delivered from the original.
    for (const segment of report.damagedSegments) await fsp.copyFile(path.join(this.journalDir, segment), path.join(this.corruptDir, `journal-${segment}`)).catch(() => undefined);
    // Marked on disk only: the live counts come from this scan (adopt), never from these marks.
    await Journal.markOnDisk(
      this.journalDir,
      report.shadowed.map((e) => [e.location!.segment, e.envelope.id]),
    );
    await Journal.removeFinished(this.journalDir, report.finishedSegments);
    const live = new Map<string, number>();
    for (const e of report.entries) if (e.location) live.set(e.location.segment, (live.get(e.location.segment) ?? 0) + 1);
    this.journal.adopt(live);
    // A state file whose message is gone belongs to a finished message.
    const names = await fsp.readdir(this.queueDir);
    const idSet = new Set(names.filter((n) => !n.endsWith('.state') && !n.endsWith('.state.tmp')));
    for (const n of names) {
      if (n.endsWith('.state.tmp') || (n.endsWith('.state') && !idSet.has(n.slice(0, -6)))) await fsp.rm(path.join(this.queueDir, n), { force: true });
    }
    return {
      entries: report.entries,
      discardedPartial: tmp.length + report.discardedPartial,
      corrupt: [...report.corrupt, ...report.damagedSegments.map((s) => `journal-${s} (damaged; its valid records are kept)`)],
      journalLive: [...live],
    };
  }

  /** Takes over the live counts another instance's recovery found, so segments go once their mail is out. */
  adoptJournal(live: [string, number][]): void {
    this.journal.adopt(new Map(live));
  }

  /** A journal message is finished (here or, told by message, in the queue worker). */
  journalDone(location: JournalLocation, id: string): void {
    if (this.options.journalDone) this.options.journalDone(location, id);
    else this.journal.markDone(location, id);
  }

  private async readEntry(id: string, hasState: boolean): Promise<SpoolEntry> {
    const handle = await fsp.open(this.messagePath(id), 'r');
    try {
      const { size } = await handle.stat();
      if (size < TRAILER_LENGTH) throw new SpoolFileInvalid('too short');
      const trailer = Buffer.alloc(TRAILER_LENGTH);
      await handle.read(trailer, 0, TRAILER_LENGTH, size - TRAILER_LENGTH);
      const text = trailer.toString('latin1');
      if (!text.startsWith(TRAILER_MAGIC)) throw new SpoolFileInvalid('no trailer');
      const bodyLength = parseInt(text.slice(4, 20), 16);
      const jsonLength = parseInt(text.slice(20, 28), 16);
      if (bodyLength + jsonLength + TRAILER_LENGTH !== size) throw new SpoolFileInvalid('bad lengths');
      const json = Buffer.alloc(jsonLength);
      await handle.read(json, 0, jsonLength, bodyLength);
      let envelope: Envelope;
      try {
        envelope = JSON.parse(json.toString('utf8')) as Envelope;
      } catch {
        throw new SpoolFileInvalid('envelope is not JSON');
      }
      const state = hasState ? await this.readState(id) : null;
      if (state) Object.assign(envelope, state);
      return { envelope, bodyLength, hasState: state !== null };
    } finally {
      await handle.close();
    }
  }

  private async readState(id: string): Promise<Partial<Envelope> | null> {
    try {
      return JSON.parse(await fsp.readFile(this.statePath(id), 'utf8')) as Partial<Envelope>;
    } catch {
      return null;
    }
  }

  /**
   * Records per-recipient progress and retry timing (atomic replace, no fsync: see the file
   * comment). A journal message first moves to a file of its own, fsynced, so that segments
   * hold only mail in its first delivery round.
   */
  async saveState(entry: SpoolEntry): Promise<void> {
    if (entry.location) return this.moveOutOfJournal(entry);
    const { id, recipients, attempts, nextAttemptAt, delayNoticeSent, dkimSignature } = entry.envelope;
    const tmp = `${this.statePath(id)}.tmp`;
    entry.hasState = true;
    await fsp.writeFile(tmp, JSON.stringify({ recipients, attempts, nextAttemptAt, delayNoticeSent, dkimSignature }));
    await fsp.rename(tmp, this.statePath(id));
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
    if (entry.location) return journalBodyStream(this.journalDir, entry.location, entry.bodyLength);
    return fs.createReadStream(this.messagePath(entry.envelope.id), { start: 0, end: entry.bodyLength - 1 });
  }

  async readBody(entry: SpoolEntry, limit = entry.bodyLength): Promise<Buffer> {
    if (entry.body) return entry.body.subarray(0, limit);
    const file = entry.location ? path.join(this.journalDir, entry.location.segment) : this.messagePath(entry.envelope.id);
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
    await fsp.unlink(this.messagePath(id)).catch(ignoreMissing);
    if (entry.hasState) await fsp.unlink(this.statePath(id)).catch(ignoreMissing);
  }

  /** Finishes pending journal writes and done marks (at shutdown). */
  close(): Promise<void> {
    return this.journal.close();
  }

  /** Free bytes on the spool's volume, as far as this process can tell (relay/spool-space.ts). */
  freeBytes(now?: number): Promise<number> {
    return this.space.freeBytes(now);
  }

  /** A writer takes bytes: refused (452) when they would take the volume below spool.minFreeBytes. */
  claimSpace(bytes: number): void {
    this.space.claim(bytes);
  }

  /** A writer is done (stored, handed to the journal, or dropped): its bytes are no longer on the way. */
  releaseSpace(bytes: number): void {
    this.space.release(bytes);
  }
}
