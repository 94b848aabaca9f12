/**
 * The suppression list's file (relay/suppression.ts keeps the list): JSON lines in the spool
 * directory, each adding or removing an entry, appended by the relay and by
 * `mailfleet suppressions` (another process). One line is one write(2) on a file opened with
 * O_APPEND, so two writers never interleave within a line; appends are not fsynced (a lost
 * line costs one more attempt to a bad address, which then bounces and is listed again). Each
 * reader remembers how far it read and which file it was (a compaction replaces it).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';

/** One line of the file. A remove without a sender domain removes the address for every sender domain. */
export type Line =
  | { op: 'add'; senderDomain: string; recipient: string; at: string; statusCode: string; reply: string; permanent?: true }
  | { op: 'remove'; senderDomain?: string; recipient: string; at: string };

/** What a read found: the lines appended since the last one, after starting over when the file was replaced or removed (`reset`). */
export interface Appended {
  reset: boolean;
  lines: Line[];
  /** Lines that could not be read (a line cut short by a full disk). */
  skipped: number;
}

export class SuppressionFile {
  /** Bytes of the file read so far, and which file (its inode). */
  private offset = 0;
  private ino = 0;

  constructor(readonly file: string) {}

  /** The lines appended since the last read; only whole lines (a writer may be half-way through one). */
  async readAppended(): Promise<Appended> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // Deleted by hand: the list is empty.
      const reset = this.ino !== 0;
      this.offset = this.ino = 0;
      return { reset, lines: [], skipped: 0 };
    }
    try {
      const { size, ino } = await handle.stat();
      const reset = ino !== this.ino || size < this.offset;
      if (reset) {
        this.offset = 0;
        this.ino = ino;
      }
      const out: Appended = { reset, lines: [], skipped: 0 };
      if (size === this.offset) return out;
      const buf = Buffer.alloc(size - this.offset);
      const { bytesRead } = await handle.read(buf, 0, buf.length, this.offset);
      const end = buf.subarray(0, bytesRead).lastIndexOf(0x0a) + 1;
      for (const text of buf.subarray(0, end).toString('utf8').split('\n')) {
        if (!text.trim()) continue;
        const line = parseLine(text);
        if (line) out.lines.push(line);
        else out.skipped++;
      }
      this.offset += end;
      return out;
    } finally {
      await handle.close();
    }
  }

  async append(line: Line): Promise<void> {
    const handle = await fsp.open(this.file, 'a+');
    try {
      // A line cut short (a full disk) would swallow the next one: end it first.
      const { size, ino } = await handle.stat();
      // The file this append made is the one the list reads from now on, not a replaced one:
      // taken for one, the next read would start the list over and drop entries whose lines
      // are still on their way.
      if (size === 0 && this.ino === 0) this.ino = ino;
      const last = Buffer.alloc(1);
      if (size > 0) await handle.read(last, 0, 1, size - 1);
      const text = `${size > 0 && last[0] !== 0x0a ? '\n' : ''}${JSON.stringify(line)}\n`;
      await handle.write(text);
    } finally {
      await handle.close();
    }
  }

  /** Replaces the file with these lines: tmp, fsync, rename, fsync the directory. What was read stays read. */
  async rewrite(lines: Line[]): Promise<void> {
    const tmp = `${this.file}.tmp`;
    const handle = await fsp.open(tmp, 'w');
    try {
      await handle.write(lines.map((l) => JSON.stringify(l) + '\n').join(''));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(tmp, this.file);
    const dir = await fsp.open(path.dirname(this.file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    const st = await fsp.stat(this.file);
    this.offset = st.size;
    this.ino = st.ino;
  }
}

function parseLine(text: string): Line | undefined {
  try {
    const l = JSON.parse(text) as Partial<Line> | null;
    if (!l || typeof l.recipient !== 'string' || typeof l.at !== 'string' || Number.isNaN(Date.parse(l.at))) return undefined;
    if (l.op === 'add' && typeof l.senderDomain === 'string' && typeof l.statusCode === 'string' && typeof l.reply === 'string') return l as Line;
    if (l.op === 'remove' && (l.senderDomain === undefined || typeof l.senderDomain === 'string')) return l as Line;
    return undefined;
  } catch {
    return undefined;
  }
}
