/**
 * Free space on the spool's volume, as far as this process can tell, and the refusal of a
 * message that would take it below spool.minFreeBytes (452 4.3.1). The figure is the last
 * statfs (taken at most a second ago: it is asked on every message) less every byte writers
 * took since, so a fast client cannot write past the floor within that second. Bytes of
 * messages that were refused or delivered since count until the next statfs: the figure errs
 * low, never high. The decisions are pure functions below; the class keeps the counts.
 */
import fsp from 'node:fs/promises';
import { refusal } from '../refusals.js';

/** How old a statfs may be before it is taken again. */
export const STATFS_MAX_AGE_MS = 1000;

export interface StatfsSample {
  at: number;
  /** Free bytes then, less the bytes writers held open then. */
  bytes: number;
  /** The writers' running total of claimed bytes when it was taken. */
  claimed: number;
}

/** Free bytes now: the sample less everything claimed since it was taken (pure). */
export function estimateFree(sample: StatfsSample, claimed: number): number {
  return sample.bytes - (claimed - sample.claimed);
}

/** Whether taking `bytes` more would go below the floor (pure). Without a sample yet, nothing is refused. */
export function claimRefused(free: number | undefined, bytes: number, floor: number): boolean {
  return floor > 0 && free !== undefined && free - bytes < floor;
}

export class FreeSpace {
  private sample: StatfsSample | null = null;
  private refreshing: Promise<number> | undefined;
  /** Bytes handed to writers since the start (only grows): what the sample has not seen yet. */
  private claimed = 0;
  /** Bytes held by writers not yet finished. */
  private open = 0;

  constructor(
    private readonly dir: string,
    /** Free bytes to keep on the volume (0 or absent: no floor, e.g. the queue's own writes). */
    private readonly minFreeBytes: () => number = () => 0,
    private readonly now: () => number = Date.now,
  ) {}

  /** Free bytes on the volume, from a statfs at most STATFS_MAX_AGE_MS old. */
  async freeBytes(now = this.now()): Promise<number> {
    if (!this.sample || now - this.sample.at >= STATFS_MAX_AGE_MS) await this.refresh(now);
    return estimateFree(this.sample!, this.claimed);
  }

  private refresh(now = this.now()): Promise<number> {
    this.refreshing ??= (async () => {
      try {
        const claimed = this.claimed;
        // Bytes in writers that are still open may not be on the volume yet: count them as taken.
        const open = this.open;
        const st = await fsp.statfs(this.dir);
        const bytes = Number(st.bavail) * Number(st.bsize) - open;
        this.sample = { at: now, bytes, claimed };
        return bytes;
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** A writer takes bytes: refused (452) when they would take the volume below the floor. */
  claim(bytes: number): void {
    const floor = this.minFreeBytes();
    if (floor > 0) {
      const now = this.now();
      if (!this.sample || now - this.sample.at >= STATFS_MAX_AGE_MS) void this.refresh(now).catch(() => undefined);
      if (claimRefused(this.sample ? estimateFree(this.sample, this.claimed) : undefined, bytes, floor)) throw refusal('storageFull');
    }
    this.claimed += bytes;
    this.open += bytes;
  }

  /** A writer is done (stored, handed to the journal, or dropped): its bytes are no longer on the way. */
  release(bytes: number): void {
    this.open -= bytes;
  }
}
