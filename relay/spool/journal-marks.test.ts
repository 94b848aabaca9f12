import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JournalMarks, segmentFinished } from './journal-marks.js';
import { JournalWriter, sealDue, SEGMENT_BYTES, SEGMENT_IDLE_MS, SEGMENT_MAX_AGE_MS, type SegmentSealed } from './journal-writer.js';
import { scanJournal } from './journal-format.js';
import type { Envelope } from '../envelope.js';
import { newQueueId } from './layout.js';

const env = (): Envelope => ({ id: newQueueId(), sender: 'app@example.test', recipients: [{ address: 'a@dest.test', status: 'pending' }], receivedAt: Date.now(), listener: 'submission', client: '127.0.0.1', headerLength: 10, attempts: 0, nextAttemptAt: 0 });

describe('journal: seal, count, delete', () => {
  it('a segment goes only once it is sealed and all its records are done', () => {
    expect(segmentFinished({ records: undefined, done: 5 })).toBe(false);
    expect(segmentFinished({ records: 3, done: 2 })).toBe(false);
    expect(segmentFinished({ records: 3, done: 3 })).toBe(true);
    expect(segmentFinished({ records: 0, done: 0 })).toBe(true);
  });

  it('the writer seals on size and on age, busy or not', () => {
    expect(sealDue({ size: SEGMENT_BYTES, openedAt: 1000, lastWriteAt: 1000 }, 1000)).toBe(true);
    const busy = SEGMENT_MAX_AGE_MS - 1;
    expect(sealDue({ size: 10, openedAt: 1000, lastWriteAt: 1000 + busy }, 1000 + busy)).toBe(false);
    expect(sealDue({ size: 10, openedAt: 1000, lastWriteAt: 1000 + busy }, 1000 + SEGMENT_MAX_AGE_MS)).toBe(true);
  });

  it('the writer seals a segment nothing was written to for a while', () => {
    expect(sealDue({ size: 10, openedAt: 1000, lastWriteAt: 1000 }, 1000 + SEGMENT_IDLE_MS - 1)).toBe(false);
    expect(sealDue({ size: 10, openedAt: 1000, lastWriteAt: 1000 }, 1000 + SEGMENT_IDLE_MS)).toBe(true);
  });

  describe('on disk', () => {
    let dir: string;
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-journal-'));
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** A writer whose clock the test moves; its seals are collected, not delivered. */
    function writer(): { journal: JournalWriter; seals: SegmentSealed[]; advance(ms: number): void } {
      let now = 1_000_000;
      const seals: SegmentSealed[] = [];
      const journal = new JournalWriter(dir, () => newQueueId(), (s) => seals.push(s), () => now);
      return { journal, seals, advance: (ms) => (now += ms) };
    }

    it('a seal that comes before the last entries of its segment are done waits for their marks', async () => {
      const { journal, seals, advance } = writer();
      const a = await journal.append(env(), Buffer.from('a'));
      const b = await journal.append(env(), Buffer.from('b'));
      const c = await journal.append(env(), Buffer.from('c'));
      advance(SEGMENT_MAX_AGE_MS);
      const d = await journal.append(env(), Buffer.from('d'));
      expect(d.segment).not.toBe(a.segment);
      expect(seals).toEqual([{ segment: a.segment, records: 3, refused: [] }]);

      const marks = new JournalMarks(dir);
      // The queue hears of the seal first, then of the entries, as can happen across threads.
      marks.sealed(seals[0]!);
      marks.done(a, 'A');
      marks.done(b, 'B');
      await marks.settle();
      expect(fs.existsSync(path.join(dir, a.segment))).toBe(true);
      marks.done(c, 'C');
      await marks.settle();
      expect(fs.readdirSync(dir).filter((f) => f.startsWith(a.segment.slice(0, -4)))).toEqual([]);
      // The segment in use stays, whatever is done in it, until the writer lets it go.
      marks.done(d, 'D');
      await marks.settle();
      expect(fs.existsSync(path.join(dir, d.segment))).toBe(true);
      await journal.close();
      await marks.close();
    });

    it('marks that come before their segment is sealed wait for the seal', async () => {
      const { journal, seals, advance } = writer();
      const records = [await journal.append(env(), Buffer.from('a')), await journal.append(env(), Buffer.from('b'))];
      const marks = new JournalMarks(dir);
      for (const r of records) marks.done(r, 'X');
      await marks.settle();
      expect(fs.existsSync(path.join(dir, records[0]!.segment))).toBe(true);
      advance(SEGMENT_MAX_AGE_MS);
      await journal.append(env(), Buffer.from('next'));
      marks.sealed(seals[0]!);
      await marks.settle();
      expect(fs.existsSync(path.join(dir, records[0]!.segment))).toBe(false);
      await journal.close();
      await marks.close();
    });

    it('a quiet writer seals its segment after a spell without appends', async () => {
      let sealed: (s: SegmentSealed) => void = () => undefined;
      const seal = new Promise<SegmentSealed>((r) => (sealed = r));
      const journal = new JournalWriter(dir, () => newQueueId(), (s) => sealed(s));
      const a = await journal.append(env(), Buffer.from('a'));
      expect(await seal).toEqual({ segment: a.segment, records: 1, refused: [] });
      await journal.close();
    });

    it('after a restart, recovered counts and the marks still to come delete a segment', async () => {
      const { journal } = writer();
      const ids = [env(), env(), env()];
      const records = [];
      for (const e of ids) records.push(await journal.append(e, Buffer.from(e.id)));
      const before = new JournalMarks(dir);
      before.done(records[0]!, ids[0]!.id);
      await before.close();
      // A crash: the writer never sealed. The start counts the segment from the disk.
      const scan = await scanJournal(dir);
      expect(scan.segments).toEqual([{ segment: records[0]!.segment, records: 3, done: 1 }]);
      expect(scan.records.map((r) => r.envelope.id)).toEqual([ids[1]!.id, ids[2]!.id]);
      const after = new JournalMarks(dir);
      after.adopt(scan.segments);
      after.done(scan.records[0]!.location, ids[1]!.id);
      await after.settle();
      expect(fs.existsSync(path.join(dir, records[0]!.segment))).toBe(true);
      after.done(scan.records[1]!.location, ids[2]!.id);
      await after.settle();
      expect(fs.readdirSync(dir)).toEqual([]);
      await journal.close();
      await after.close();
    });
  });
});
