import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { JournalLocation } from './journal-format.js';
import { DirSyncer, Spool, newQueueId, type Envelope } from './spool.js';

function envelope(over: Partial<Envelope> = {}): Omit<Envelope, 'id'> {
  return {
    sender: 'app@example.test',
    recipients: [
      { address: 'a@dest.test', status: 'pending' },
      { address: 'b@dest.test', status: 'pending' },
    ],
    receivedAt: Date.now(),
    listener: 'submission',
    client: '127.0.0.1',
    headerLength: 10,
    attempts: 0,
    nextAttemptAt: 0,
    ...over,
  };
}

/** Every spool a test opens is closed after it (its journal keeps files open). */
const spools: Spool[] = [];
function track(spool: Spool): Spool {
  spools.push(spool);
  return spool;
}

describe('spool', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-spool-'));
  });
  afterEach(async () => {
    await Promise.all(spools.splice(0).map((s) => s.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('stores a message once for all recipients and recovers it after a restart', async () => {
    const spool = track(new Spool(dir));
    await spool.open();
    const body = Buffer.from('Subject: hi\r\n\r\nhello\r\n');
    const stored = await spool.store(envelope(), body);
    expect(fs.readdirSync(path.join(dir, 'q'))).toEqual([stored.envelope.id]);

    const reopened = track(new Spool(dir));
    await reopened.open();
    const report = await reopened.recover();
    expect(report.entries).toHaveLength(1);
    const entry = report.entries[0]!;
    expect(entry.envelope.recipients.map((r) => r.address)).toEqual(['a@dest.test', 'b@dest.test']);
    expect(await text(reopened.openBody(entry))).toBe(body.toString());
  });

  it('scans beside a running relay: a message finished between the listing and the read is left out, not an error', async () => {
    const spool = track(new Spool(dir));
    await spool.open();
    const kept = await spool.store(envelope(), Buffer.from('Subject: kept\r\n\r\nx\r\n'));
    const finished = await spool.store(envelope(), Buffer.from('Subject: finished\r\n\r\nx\r\n'));
    // The relay removes the message just as the scan opens it.
    const open = fsp.open.bind(fsp);
    const spy = vi.spyOn(fsp, 'open').mockImplementation(async (file, ...rest) => {
      if (String(file).endsWith(finished.envelope.id)) await spool.remove(finished);
      return open(file, ...(rest as [string]));
    });
    try {
      const scanned = await track(new Spool(dir)).scan();
      expect(scanned.entries.map((e) => e.envelope.id)).toEqual([kept.envelope.id]);
      expect(scanned.corrupt).toEqual([]);
    } finally {
      spy.mockRestore();
    }
  });

  it('streams a body written in chunks and reads per-recipient state back over the envelope', async () => {
    const spool = track(new Spool(dir));
    await spool.open();
    const writer = spool.createWriter();
    await writer.write(Buffer.from('Subject: x\r\n\r\n'));
    await writer.write(Buffer.alloc(100_000, 'a'));
    const entry = await writer.commit({ ...envelope(), id: writer.id });
    expect(entry.bodyLength).toBe(14 + 100_000);
    entry.envelope.recipients[0]!.status = 'delivered';
    entry.envelope.attempts = 1;
    entry.envelope.nextAttemptAt = 12345;
    await spool.saveState(entry);

    const report = await track(new Spool(dir)).recover();
    const back = report.entries[0]!;
    expect(back.bodyLength).toBe(entry.bodyLength);
    expect(back.envelope.recipients.map((r) => r.status)).toEqual(['delivered', 'pending']);
    expect(back.envelope.nextAttemptAt).toBe(12345);
  });

  it('discards half-written messages that were never acknowledged and quarantines damaged files', async () => {
    const spool = track(new Spool(dir));
    await spool.open();
    const writer = spool.createWriter();
    // Large enough for a file of its own (smaller bodies wait in memory for the journal).
    await writer.write(Buffer.alloc(300 * 1024, 'p'));
    expect(writer.smallBody()).toBeUndefined();
    // The process dies here: no commit, and its descriptor goes with it.
    await (writer as unknown as { handle: { close(): Promise<void> } }).handle.close();
    fs.writeFileSync(path.join(dir, 'q', 'BROKEN1'), 'not a spool file at all, no trailer');
    const kept = await spool.store(envelope(), Buffer.from('x'));

    const report = await track(new Spool(dir)).recover();
    expect(report.discardedPartial).toBe(1);
    expect(report.corrupt).toEqual(['BROKEN1']);
    expect(report.entries.map((e) => e.envelope.id)).toEqual([kept.envelope.id]);
    expect(fs.readdirSync(path.join(dir, 'tmp'))).toEqual([]);
    expect(fs.readdirSync(path.join(dir, 'corrupt'))).toEqual(['BROKEN1']);
  });

  it('removes a finished message and its state, and cleans stale state files on recovery', async () => {
    const spool = track(new Spool(dir));
    await spool.open();
    const a = await spool.store(envelope(), Buffer.from('a'));
    await spool.saveState(a);
    await spool.remove(a);
    fs.writeFileSync(path.join(dir, 'q', 'GONE.state'), '{}');
    const report = await spool.recover();
    expect(report.entries).toEqual([]);
    expect(fs.readdirSync(path.join(dir, 'q'))).toEqual([]);
  });

  it('makes many concurrent stores durable with shared directory fsyncs', async () => {
    const spool = track(new Spool(dir));
    await spool.open();
    const stored = await Promise.all(Array.from({ length: 50 }, (_, i) => spool.store(envelope(), Buffer.from(`m${i}`))));
    const report = await track(new Spool(dir)).recover();
    expect(new Set(report.entries.map((e) => e.envelope.id))).toEqual(new Set(stored.map((s) => s.envelope.id)));
  });

  it('a failed directory fsync fails only the commits waiting on it; later ones succeed', async () => {
    let calls = 0;
    const syncer = new DirSyncer(async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 5));
      if (calls === 1) throw new Error('EIO');
    });
    const first = syncer.sync();
    const queued = syncer.sync();
    await expect(first).rejects.toThrow('EIO');
    await expect(queued).resolves.toBeUndefined();
    const later = await Promise.allSettled([syncer.sync(), syncer.sync(), syncer.sync()]);
    expect(later.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
  });

  describe('journal', () => {
    const env = (over: Partial<Envelope> = {}): Envelope => ({ ...envelope(), id: newQueueId(), ...over });
    const journalFiles = () => fs.readdirSync(path.join(dir, 'j')).sort();
    /** The file of done marks beside the segment holding this message. */
    const doneFile = (location: JournalLocation) => path.join(dir, 'j', location.segment.replace('.log', '.done'));

    it('makes concurrent appends durable together and finds them after a restart, bodies on disk', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const sent = Array.from({ length: 40 }, (_, i) => ({ env: env(), body: Buffer.from(`Subject: ${i}\r\n\r\nbody ${i}\r\n`) }));
      const entries = await Promise.all(sent.map((m) => spool.append(m.env, m.body)));
      // All 40 went into one segment.
      expect(new Set(entries.map((e) => e.location!.segment)).size).toBe(1);
      const reopened = track(new Spool(dir));
      await reopened.open();
      const report = await reopened.recover();
      expect(report.entries.map((e) => e.envelope.id).sort()).toEqual(sent.map((m) => m.env.id).sort());
      for (const e of report.entries) {
        expect(e.body).toBeUndefined();
        const want = sent.find((m) => m.env.id === e.envelope.id)!.body.toString();
        expect(await text(reopened.openBody(e))).toBe(want);
        expect((await reopened.readBody(e, 10)).toString()).toBe(want.slice(0, 10));
      }
    });

    it('a message marked done is not found again; a segment with nothing left goes at the next start', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const a = await spool.append(env(), Buffer.from('a'));
      const b = await spool.append(env(), Buffer.from('b'));
      await spool.remove(a);
      await spool.close();
      const again = track(new Spool(dir));
      await again.open();
      expect((await again.recover()).entries.map((e) => e.envelope.id)).toEqual([b.envelope.id]);
      await again.remove((await track(new Spool(dir)).scan()).entries[0]!);
      await again.close();
      const third = track(new Spool(dir));
      await third.open();
      expect((await third.recover()).entries).toEqual([]);
      expect(journalFiles()).toEqual([]);
    });

    it('deletes a sealed segment as soon as its last message is done', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const a = await spool.append(env(), Buffer.from('a'));
      await spool.close();
      // A new instance (a restart) never writes into an old segment.
      const next = track(new Spool(dir));
      await next.open();
      const [found] = (await next.recover()).entries;
      const c = await next.append(env(), Buffer.from('c'));
      expect(c.location!.segment).not.toBe(a.location!.segment);
      await next.remove(found!);
      await next.delivery.settle();
      expect(journalFiles()).toEqual([c.location!.segment]);
    });

    it('a record cut short by a crash was never acknowledged: recovery drops it and keeps the rest', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const kept = await spool.append(env(), Buffer.from('kept'));
      await spool.close();
      const file = path.join(dir, 'j', kept.location!.segment);
      const whole = fs.readFileSync(file);
      // Half of a second record: the header and a few bytes (what a crash mid-write leaves).
      fs.appendFileSync(file, whole.subarray(0, 20));
      const report = await track(new Spool(dir)).recover();
      expect(report.discardedPartial).toBe(1);
      expect(report.entries.map((e) => e.envelope.id)).toEqual([kept.envelope.id]);
      // Damaged bytes inside a record (zeros where the body should be): its checksum fails.
      fs.writeFileSync(file, Buffer.concat([whole.subarray(0, 20), Buffer.alloc(whole.length - 20)]));
      expect((await track(new Spool(dir)).scan()).entries).toEqual([]);
    });

    it('a recovery after the queue stopped takes its counts from the disk: a lost mark never deletes live mail', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const x = await spool.append(env(), Buffer.from('x, still to be delivered'));
      const y = await spool.append(env(), Buffer.from('y, deferred'));
      // Y moved to a file of its own and was marked done, but its mark never reached the disk.
      await track(new Spool(dir)).store({ ...y.envelope, attempts: 1 }, Buffer.from('y, deferred'));
      spool.journalDone(y.location!, y.envelope.id);
      await spool.delivery.settle();
      fs.rmSync(doneFile(y.location!), { force: true });
      await spool.close();
      // The handoff at shutdown recovers with a spool object of its own.
      const handoff = track(new Spool(dir));
      const report = await handoff.recover();
      expect(report.entries.map((e) => e.envelope.id).sort()).toEqual([x.envelope.id, y.envelope.id].sort());
      const xEntry = report.entries.find((e) => e.envelope.id === x.envelope.id)!;
      expect(xEntry.location?.segment).toBe(x.location!.segment);
      expect(fs.existsSync(path.join(dir, 'j', x.location!.segment))).toBe(true);
      expect((await handoff.readBody(xEntry)).toString()).toBe('x, still to be delivered');
      // Once X is done, the segment goes.
      await handoff.remove(xEntry);
      await handoff.delivery.settle();
      expect(fs.existsSync(path.join(dir, 'j', x.location!.segment))).toBe(false);
    });

    it('a done mark that cannot be written is kept and written with the next flush', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const a = await spool.append(env(), Buffer.from('a'));
      const b = await spool.append(env(), Buffer.from('b'));
      const journal = spool.delivery;
      // The .done file cannot be opened (a directory in its place: EISDIR, as ENOSPC or EMFILE would).
      const done = doneFile(a.location!);
      fs.mkdirSync(done);
      spool.journalDone(a.location!, a.envelope.id);
      await journal.settle();
      fs.rmdirSync(done);
      spool.journalDone(b.location!, b.envelope.id);
      await journal.settle();
      expect(fs.readFileSync(done, 'utf8').split('\n').filter(Boolean).sort()).toEqual([a.envelope.id, b.envelope.id].sort());
      expect((await track(new Spool(dir)).scan()).entries).toEqual([]);
    });

    it('a mark line cut short by a crash does not swallow the next mark', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const a = await spool.append(env(), Buffer.from('a'));
      const b = await spool.append(env(), Buffer.from('b'));
      await spool.close();
      fs.writeFileSync(doneFile(a.location!), a.envelope.id.slice(0, 5));
      const next = track(new Spool(dir));
      await next.open();
      const found = (await next.recover()).entries;
      expect(found).toHaveLength(2);
      await next.remove(found.find((e) => e.envelope.id === a.envelope.id)!);
      await next.close();
      expect((await track(new Spool(dir)).scan()).entries.map((e) => e.envelope.id)).toEqual([b.envelope.id]);
    });

    it('damage before the end of a segment is reported and stepped over; later records still count', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const first = await spool.append(env(), Buffer.from('first'));
      const second = await spool.append(env(), Buffer.from('second'));
      await spool.close();
      const file = path.join(dir, 'j', first.location!.segment);
      const data = fs.readFileSync(file);
      const at = first.location!.offset + 1;
      data[at] = data[at]! ^ 0xff; // flipped bits in the first body
      fs.writeFileSync(file, data);
      const report = await track(new Spool(dir)).recover();
      expect(report.entries.map((e) => e.envelope.id)).toEqual([second.envelope.id]);
      expect(report.corrupt).toEqual([`journal-${first.location!.segment} (damaged; its valid records are kept)`]);
      expect(fs.readdirSync(path.join(dir, 'corrupt'))).toEqual([`journal-${first.location!.segment}`]);
    });

    it('a damaged file of its own does not hide the good journal copy of the same message', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const m = await spool.append(env(), Buffer.from('good copy'));
      await spool.close();
      fs.writeFileSync(path.join(dir, 'q', m.envelope.id), 'half a file, no trailer');
      const report = await track(new Spool(dir)).recover();
      expect(report.entries.map((e) => [e.envelope.id, e.location?.segment])).toEqual([[m.envelope.id, m.location!.segment]]);
    });

    it('moves a message that needs state to a file of its own before the journal lets it go', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const entry = await spool.append(env(), Buffer.from('Subject: later\r\n\r\nbody\r\n'));
      const segment = entry.location!.segment;
      entry.envelope.recipients[0]!.status = 'delivered';
      entry.envelope.attempts = 1;
      await spool.saveState(entry);
      expect(entry.location).toBeUndefined();
      expect(fs.readdirSync(path.join(dir, 'q'))).toEqual([entry.envelope.id]);
      await spool.close();
      const report = await track(new Spool(dir)).recover();
      expect(report.entries).toHaveLength(1);
      expect(report.entries[0]!.location).toBeUndefined();
      expect(report.entries[0]!.envelope.recipients.map((r) => r.status)).toEqual(['delivered', 'pending']);
      expect(await text(track(new Spool(dir)).openBody(report.entries[0]!))).toBe('Subject: later\r\n\r\nbody\r\n');
      // The segment held nothing else: gone at that start.
      expect(journalFiles().filter((f) => f.startsWith(segment.slice(0, -4)))).toEqual([]);
    });

    it('prefers the file when the done mark of a moved message was lost', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const entry = await spool.append(env(), Buffer.from('x'));
      await spool.close();
      // The file exists (moved out) but the journal still has the record as live.
      await track(new Spool(dir)).store({ ...entry.envelope, attempts: 3 }, Buffer.from('x'));
      const report = await track(new Spool(dir)).recover();
      expect(report.entries).toHaveLength(1);
      expect(report.entries[0]!.envelope.attempts).toBe(3);
      expect(report.entries[0]!.location).toBeUndefined();
    });

    it('a failed write refuses the messages of its batch; later appends go to a new segment', async () => {
      const spool = track(new Spool(dir));
      await spool.open();
      const first = await spool.append(env(), Buffer.from('first'));
      // Take the segment's file handle away under the journal: its next write fails.
      const journal = (spool.intake as unknown as { journal: { active: { handle: { close(): Promise<void> } } } }).journal;
      await journal.active.handle.close();
      const refused = env();
      await expect(spool.append(refused, Buffer.from('x'))).rejects.toThrow();
      const later = await spool.append(env(), Buffer.from('later'));
      expect(later.location!.segment).not.toBe(first.location!.segment);
      await spool.close();
      const ids = (await track(new Spool(dir)).recover()).entries.map((e) => e.envelope.id).sort();
      expect(ids).toEqual([first.envelope.id, later.envelope.id].sort());
      expect(ids).not.toContain(refused.id);
    });
  });
});
