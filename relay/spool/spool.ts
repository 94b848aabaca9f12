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
 * The relay makes one side in each thread: a SpoolIntake in the main thread (relay/main.ts) and
 * a SpoolDelivery in the queue's (relay/queue/runtime.ts). Intake and the queue manager name
 * only what they use of a side (IntakeSpool, DeliverySpool), so giving one the wrong side does
 * not compile. `Spool` is both sides in one object over the directory, for tests, tools and the
 * handoff at shutdown after the queue stopped: the writer's seals and a recovery's segments go
 * straight to its own queue side.
 */
import type { Readable } from 'node:stream';
import type { Envelope } from '../envelope.js';
import type { JournalLocation } from './journal-format.js';
import { SpoolDelivery } from './delivery.js';
import { SpoolIntake } from './intake.js';
import { SpoolLayout, type SpoolEntry } from './layout.js';
import { recoverSpool, scanSpool, type RecoveryReport, type SpoolScan } from './recovery.js';
import type { SpoolWriter } from './writer.js';

export type { Envelope, RecipientState, RecipientStatus } from '../envelope.js';
export { DirSyncer, isOutOfSpace, newQueueId, SpoolLayout, type SpoolEntry } from './layout.js';
export type { RecoveryReport, SpoolScan } from './recovery.js';
export type { SpoolWriter } from './writer.js';
export { SpoolDelivery, SpoolIntake };

/** What intake uses of the spool: the writer side. */
export type IntakeSpool = Pick<SpoolIntake, 'createWriter' | 'append' | 'store' | 'freeBytes'>;

/** What the queue manager uses of the spool: the queue side. */
export type DeliverySpool = Pick<SpoolDelivery, 'reserveCache' | 'saveState' | 'openBody' | 'readBody' | 'remove' | 'journalDone' | 'store'>;

export interface SpoolOptions {
  /** Free bytes to keep on the volume (the writer side refuses a message below it: 452 4.3.1). */
  minFreeBytes?: () => number;
}

export class Spool {
  readonly layout: SpoolLayout;
  private intakeSide: SpoolIntake | undefined;
  private deliverySide: SpoolDelivery | undefined;

  constructor(
    readonly dir: string,
    private readonly options: SpoolOptions = {},
  ) {
    this.layout = new SpoolLayout(dir);
  }

  /** The writer side, made on first use. */
  get intake(): SpoolIntake {
    return (this.intakeSide ??= new SpoolIntake(this.layout, { minFreeBytes: this.options.minFreeBytes, sealed: (seal) => this.delivery.sealed(seal) }));
  }

  /** The queue side, made on first use. */
  get delivery(): SpoolDelivery {
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

  /** Tidies and reads the spool for a start (relay/spool/recovery.ts); its queue side takes the segments' counts. */
  async recover(): Promise<RecoveryReport> {
    // Marks made here so far (and deletions begun) must be on disk, or a finished message would look live.
    await this.deliverySide?.settle();
    const report = await recoverSpool(this.layout);
    this.delivery.adopt(report.segments);
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

  /** Stores a whole message in a file of its own, as the writer side does (a handoff, counted against the floor). */
  store(envelope: Omit<Envelope, 'id'> & { id?: string }, body: Buffer): Promise<SpoolEntry> {
    return this.intake.store(envelope, body);
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
