import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DirSyncer, Spool, type Envelope } from './spool.js';

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

describe('spool', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-spool-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('stores a message once for all recipients and recovers it after a restart', async () => {
    const spool = new Spool(dir);
    await spool.open();
    const body = Buffer.from('Subject: hi\r\n\r\nhello\r\n');
    const stored = await spool.store(envelope(), body);
    expect(fs.readdirSync(path.join(dir, 'q'))).toEqual([stored.envelope.id]);

    const reopened = new Spool(dir);
    await reopened.open();
    const report = await reopened.recover();
    expect(report.entries).toHaveLength(1);
    const entry = report.entries[0]!;
    expect(entry.envelope.recipients.map((r) => r.address)).toEqual(['a@dest.test', 'b@dest.test']);
    expect(await text(reopened.openBody(entry))).toBe(body.toString());
  });

  it('streams a body written in chunks and reads per-recipient state back over the envelope', async () => {
    const spool = new Spool(dir);
    await spool.open();
    const writer = await spool.createWriter();
    await writer.write(Buffer.from('Subject: x\r\n\r\n'));
    await writer.write(Buffer.alloc(100_000, 'a'));
    const entry = await writer.commit({ ...envelope(), id: writer.id });
    expect(entry.bodyLength).toBe(14 + 100_000);
    entry.envelope.recipients[0]!.status = 'delivered';
    entry.envelope.attempts = 1;
    entry.envelope.nextAttemptAt = 12345;
    await spool.saveState(entry);

    const report = await new Spool(dir).recover();
    const back = report.entries[0]!;
    expect(back.bodyLength).toBe(entry.bodyLength);
    expect(back.envelope.recipients.map((r) => r.status)).toEqual(['delivered', 'pending']);
    expect(back.envelope.nextAttemptAt).toBe(12345);
  });

  it('discards half-written messages that were never acknowledged and quarantines damaged files', async () => {
    const spool = new Spool(dir);
    await spool.open();
    const writer = await spool.createWriter();
    await writer.write(Buffer.from('partial'));
    // the process dies here: no commit
    fs.writeFileSync(path.join(dir, 'q', 'BROKEN1'), 'not a spool file at all, no trailer');
    const kept = await spool.store(envelope(), Buffer.from('x'));

    const report = await new Spool(dir).recover();
    expect(report.discardedPartial).toBe(1);
    expect(report.corrupt).toEqual(['BROKEN1']);
    expect(report.entries.map((e) => e.envelope.id)).toEqual([kept.envelope.id]);
    expect(fs.readdirSync(path.join(dir, 'tmp'))).toEqual([]);
    expect(fs.readdirSync(path.join(dir, 'corrupt'))).toEqual(['BROKEN1']);
  });

  it('removes a finished message and its state, and cleans stale state files on recovery', async () => {
    const spool = new Spool(dir);
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
    const spool = new Spool(dir);
    await spool.open();
    const stored = await Promise.all(Array.from({ length: 50 }, (_, i) => spool.store(envelope(), Buffer.from(`m${i}`))));
    const report = await new Spool(dir).recover();
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
});

