/**
 * The spool's writer side, in the main thread: mail comes in here and nowhere else. It appends
 * small messages to the journal (relay/spool/journal-writer.ts), writes larger and handed-over ones
 * to files of their own (relay/spool/writer.ts), keeps the free-space account
 * (relay/spool/space.ts) and recovers the spool at a start, before it takes mail. It never
 * reads a state file, marks a message done or deletes anything a message still needs: once a
 * message is handed to the queue, the queue side (relay/spool/delivery.ts) owns it. All it
 * tells the queue side besides the entries is which segments it let go, and how many records
 * each holds (SegmentSealed).
 */
import type { Envelope } from '../envelope.js';
import { JournalWriter, type SegmentSealed } from './journal-writer.js';
import { DirSyncer, newQueueId, type SpoolEntry, type SpoolLayout } from './layout.js';
import { syncDir } from './journal-format.js';
import { recoverSpool, type RecoveryReport } from './recovery.js';
import { FreeSpace } from './space.js';
import { SpoolWriter, storeFile, type WriterTarget } from './writer.js';

export interface SpoolIntakeOptions {
  /**
   * Free bytes to keep on the volume: a message whose bytes would go below it is refused
   * while it arrives (an SmtpRefusal, 452 4.3.1).
   */
  minFreeBytes?: () => number;
  /** Hears of every journal segment the writer lets go (the queue side deletes it once its mail is out). */
  sealed: (seal: SegmentSealed) => void;
}

export class SpoolIntake {
  private readonly journal: JournalWriter;
  private readonly space: FreeSpace;
  private readonly target: WriterTarget;
  /** Closed at the end of a drain: nothing more is stored (a peer's late handoff is refused, so the peer keeps it). */
  private closed = false;
  private readonly storing = new Set<Promise<unknown>>();

  constructor(
    readonly layout: SpoolLayout,
    options: SpoolIntakeOptions,
  ) {
    this.journal = new JournalWriter(layout.journalDir, () => newQueueId(), options.sealed);
    this.space = new FreeSpace(layout.dir, () => options.minFreeBytes?.() ?? 0);
    const syncer = new DirSyncer(() => syncDir(layout.queueDir));
    this.target = {
      layout,
      syncQueueDir: () => syncer.sync(),
      space: this.space,
      journal: (envelope, body) => this.journal.append(envelope, body),
    };
  }

  /** Receives one message's body (intake). */
  createWriter(id = newQueueId()): SpoolWriter {
    return new SpoolWriter(this.target, id);
  }

  /** Stores a small message in the journal; resolves once it is durable. */
  async append(envelope: Envelope, body: Buffer): Promise<SpoolEntry> {
    const location = await this.journal.append(envelope, body);
    return { envelope, bodyLength: body.length, body, location };
  }

  /** Stores a whole message in a file of its own (a peer's handoff) and resolves when it is durable. */
  store(envelope: Omit<Envelope, 'id'> & { id?: string }, body: Buffer): Promise<SpoolEntry> {
    if (this.closed) return Promise.reject(new Error('the spool is closed: this relay is stopping'));
    const stored = storeFile(this.target, envelope, body);
    const settled: Promise<unknown> = stored.catch(() => undefined).then(() => this.storing.delete(settled));
    this.storing.add(settled);
    return stored;
  }

  /** Free bytes on the spool's volume, as far as this process can tell. */
  freeBytes(now?: number): Promise<number> {
    return this.space.freeBytes(now);
  }

  /** Tidies and reads the spool for a start (relay/spool/recovery.ts); before any append. */
  recover(): Promise<RecoveryReport> {
    return recoverSpool(this.layout);
  }

  /** Finishes the journal write and the stores under way (at shutdown); nothing is stored after. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.storing);
    await this.journal.close();
  }
}
