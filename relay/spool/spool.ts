/**
 * The durable spool: nothing is acknowledged before it is on disk and fsynced (RFC 5321 6.1).
 *
 * Small messages (up to 256 KiB, nearly all mail) go to the journal: appended in groups that
 * share one fdatasync (relay/spool/journal-writer.ts), marked done when finished, a segment deleted
 * once sealed and all its mail is done (relay/spool/journal-marks.ts). Larger ones, and any message
 * that must stay past its first delivery round, have a file of their own (relay/spool/file.ts,
 * relay/spool/writer.ts) with its progress in a state file beside it. Recovery:
 * relay/spool/recovery.ts.
 *
 * Two sides work on one spool directory, one object each: the writer side in the main thread
 * (relay/spool/intake.ts: appends, message files, free space, recovery at a start) and the
 * queue side (relay/spool/delivery.ts: bodies, state files, removal, done marks, segment
 * deletion, DSN files). Data between them flows one way: entries and sealed segments, from the
 * writer to the queue.
 *
 * `Spool` is the one name intake and the queue manager take: an object for one side
 * (`role: 'intake'` in the main thread, `role: 'delivery'` in the queue) or, by default, both
 * sides in one object over the directory (tests, tools, the handoff at shutdown after the
 * queue stopped), where the writer's seals and a recovery's segments go straight to its own
 * queue side. A method of a side the object is not for throws: that is a wiring mistake.
 * (Once intake and the queue manager name SpoolIntake and SpoolDelivery themselves, the relay
 * needs no Spool object: it stays for tests and tools.)
 */
import type { Readable } from 'node:stream';
import type { Envelope } from '../envelope.js';
import type { JournalLocation } from './journal-format.js';
import type { SegmentSealed } from './journal-writer.js';
import { SpoolDelivery } from './delivery.js';
import { SpoolIntake } from './intake.js';
import { SpoolLayout, type SpoolEntry } from './layout.js';
import { recoverSpool, scanSpool, type RecoveryReport, type SpoolScan } from './recovery.js';
import type { SpoolWriter } from './writer.js';

export type { Envelope, RecipientState, RecipientStatus } from '../envelope.js';
export { DirSyncer, isOutOfSpace, newQueueId, type SpoolEntry } from './layout.js';
export type { RecoveryReport, SpoolScan } from './recovery.js';
export type { SpoolWriter } from './writer.js';

export type SpoolRole = 'intake' | 'delivery' | 'both';

export interface SpoolOptions {
  /** Which side this object is (see the file comment). Default: both. */
  role?: SpoolRole;
  /** Free bytes to keep on the volume (the writer side refuses a message below it: 452 4.3.1). */
  minFreeBytes?: () => number;
  /** With role 'intake': where the writer's sealed segments go (the queue, in its thread). */
  sealed?: (seal: SegmentSealed) => void;
}

export class Spool {
  readonly layout: SpoolLayout;
  private readonly role: SpoolRole;
  private intakeSide: SpoolIntake | undefined;
  private deliverySide: SpoolDelivery | undefined;

  constructor(
    readonly dir: string,
    private readonly options: SpoolOptions = {},
  ) {
    this.layout = new SpoolLayout(dir);
    this.role = options.role ?? 'both';
    // The writer side alone would otherwise keep every segment it let go until the next start.
    if (this.role === 'intake' && !options.sealed) throw new Error("a spool's writer side needs `sealed`: the queue side must hear of every segment it lets go");
  }

  /** The writer side, made on first use. */
  get intake(): SpoolIntake {
    if (this.role === 'delivery') throw new Error('this spool object is the queue side: mail is written by the writer side in the main thread');
    return (this.intakeSide ??= new SpoolIntake(this.layout, {
      minFreeBytes: this.options.minFreeBytes,
      sealed: this.role === 'both' ? (seal) => this.delivery.sealed(seal) : this.options.sealed!,
    }));
  }

  /** The queue side, made on first use. */
  get delivery(): SpoolDelivery {
    if (this.role === 'intake') throw new Error('this spool object is the writer side: the queue side owns a message once it is handed over');
    return (this.deliverySide ??= new SpoolDelivery(this.layout));
  }

  /** Creates the layout and checks it is writable; resolves with whether the volume is full (see SpoolLayout.open). */
  open(): Promise<{ full: boolean }> {
    return this.layout.open();
  }

  /** Every message in the spool, as a restart would find it, without bodies. Changes nothing: safe beside a running relay. */
  scan(): Promise<SpoolScan> {
    return scanSpool(this.layout);
  }

  /**
   * Tidies and reads the spool for a start (relay/spool/recovery.ts). Both sides in this object:
   * its queue side takes the segments' counts; the writer side alone hands them to the queue.
   */
  async recover(): Promise<RecoveryReport> {
    // Marks made here so far (and deletions begun) must be on disk, or a finished message would look live.
    await this.deliverySide?.settle();
    const report = await recoverSpool(this.layout);
    if (this.role === 'both') this.delivery.adopt(report.segments);
    return report;
  }

  // The writer side.

  createWriter(id?: string): SpoolWriter {
    return this.intake.createWriter(id);
  }

  append(envelope: Envelope, body: Buffer): Promise<SpoolEntry> {
    return this.intake.append(envelope, body);
  }

  freeBytes(now?: number): Promise<number> {
    return this.intake.freeBytes(now);
  }

  /** Stores a whole message in a file of its own: the writer side's (handoff, counted against the floor) or the queue's (DSNs, never refused). */
  store(envelope: Omit<Envelope, 'id'> & { id?: string }, body: Buffer): Promise<SpoolEntry> {
    return this.role === 'delivery' ? this.delivery.store(envelope, body) : this.intake.store(envelope, body);
  }

  // The queue side.

  reserveCache(bytes: number): boolean {
    return this.delivery.reserveCache(bytes);
  }

  saveState(entry: SpoolEntry): Promise<void> {
    return this.delivery.saveState(entry);
  }

  openBody(entry: SpoolEntry): Readable {
    return this.delivery.openBody(entry);
  }

  readBody(entry: SpoolEntry, limit?: number): Promise<Buffer> {
    return this.delivery.readBody(entry, limit);
  }

  remove(entry: SpoolEntry): Promise<void> {
    return this.delivery.remove(entry);
  }

  journalDone(location: JournalLocation, id: string): void {
    this.delivery.journalDone(location, id);
  }

  /** Finishes the journal write under way, writes pending done marks and closes files (at shutdown). */
  async close(): Promise<void> {
    await this.intakeSide?.close();
    await this.deliverySide?.close();
  }
}
