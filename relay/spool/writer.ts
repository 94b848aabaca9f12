/**
 * Receives one message's body, and stores whole messages in files of their own. A body stays
 * in memory while it is small (the journal takes it at the end); past JOURNAL_MAX it goes to a
 * file in tmp/ as it arrives. A message file is written in tmp/ (body, envelope, trailer:
 * relay/spool/file.ts), fsynced, renamed into q/, and q/ fsynced before the message counts as
 * stored: until then nothing is acknowledged, and a failure takes the file back out.
 */
import fsp from 'node:fs/promises';
import type { Envelope } from '../envelope.js';
import type { JournalLocation } from './journal-format.js';
import { queueFileTail } from './file.js';
import { CACHE_BODY_MAX, JOURNAL_MAX, newQueueId, type SpoolEntry, type SpoolLayout } from './layout.js';
import type { FreeSpace } from './space.js';

/** Where a writer's message goes. */
export interface WriterTarget {
  layout: SpoolLayout;
  /** The coalesced fsync of q/ (relay/spool/layout.ts DirSyncer). */
  syncQueueDir(): Promise<void>;
  /** The free-space account its bytes are claimed from; absent for the queue's own writes (never refused). */
  space?: FreeSpace;
  /** The journal, for a body that stayed small; absent: always a file of its own. */
  journal?: (envelope: Envelope, body: Buffer) => Promise<JournalLocation>;
}

export class SpoolWriter {
  private handle: fsp.FileHandle | undefined;
  /** Bytes handed to the file so far. */
  private flushed = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private closed = false;
  private released = false;
  /** Bytes this writer took from the free-space account. */
  private claimedBytes = 0;
  /** A write to the file under way (abort waits for it, or the file it opens would stay). */
  private flushing: Promise<void> | undefined;
  private readonly tmpPath: string;

  constructor(
    private readonly target: WriterTarget,
    readonly id: string,
  ) {
    this.tmpPath = target.layout.tmpPath(id);
  }

  /** Takes a chunk; returns a promise only when the body outgrew the journal and went to its file. */
  write(chunk: Buffer): Promise<void> | undefined {
    this.target.space?.claim(chunk.length);
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

  /** The whole body, when it stayed small enough for the journal; undefined once it went to a file. */
  smallBody(): Buffer | undefined {
    return this.flushed === 0 ? Buffer.concat(this.pending, this.pendingBytes) : undefined;
  }

  /**
   * Stores the message where it belongs and resolves once it is durable: the journal while the
   * body stayed small (group commit), else a file of its own. Its bytes count as on their way
   * to the volume until then (a journal write under way is not in a statfs yet).
   */
  async keep(envelope: Envelope): Promise<SpoolEntry> {
    const small = this.target.journal && this.smallBody();
    if (!small) return this.commit(envelope);
    try {
      const location = await this.target.journal!(envelope, small);
      return { envelope, bodyLength: small.length, body: small, location };
    } finally {
      this.release();
    }
  }

  /** Once: the free-space account no longer counts this body as on its way to the volume. */
  private release(): void {
    if (this.released) return;
    this.released = true;
    this.target.space?.release(this.claimedBytes);
  }

  /** Writes the message to a file of its own: body, envelope, trailer; fsyncs file and directory. Resolves only when the message is durable. */
  async commit(envelope: Envelope): Promise<SpoolEntry> {
    const bodyLength = this.bodyLength;
    const body = this.flushed === 0 && bodyLength <= CACHE_BODY_MAX ? Buffer.concat(this.pending, bodyLength) : undefined;
    this.pending.push(...queueFileTail(envelope, bodyLength));
    try {
      await this.flush();
    } finally {
      this.release();
    }
    await this.handle!.sync();
    await this.handle!.close();
    this.closed = true;
    const file = this.target.layout.messagePath(this.id);
    await fsp.rename(this.tmpPath, file);
    try {
      await this.target.syncQueueDir();
    } catch (err) {
      // Not durable, so not acknowledged: take it back out, or a restart would deliver a
      // message the client was told to send again.
      await fsp.unlink(file).catch(() => undefined);
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

/** Stores a whole message in a file of its own (DSNs, handoff, mail that stays) and resolves when it is durable. */
export async function storeFile(target: WriterTarget, envelope: Omit<Envelope, 'id'> & { id?: string }, body: Buffer): Promise<SpoolEntry> {
  const writer = new SpoolWriter(target, envelope.id ?? newQueueId());
  try {
    await writer.write(body);
    return await writer.commit({ ...envelope, id: writer.id });
  } catch (err) {
    await writer.abort();
    throw err;
  }
}
