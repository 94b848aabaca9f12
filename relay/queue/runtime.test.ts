import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';
import type { SegmentSealed } from '../spool/journal-writer.js';
import { InlineQueue } from './inline.js';
import { Spool, SpoolIntake, SpoolLayout, newQueueId, type Envelope } from '../spool/spool.js';

/** The two sides as startRelay wires them: the writer side here, the queue behind the message protocol. */
describe('the spool across the queue boundary', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-boundary-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const config = () => parseConfig({ hostname: 'relay.test', spool: { dir: 'spool' }, listeners: [{ name: 'open', address: '127.0.0.1', port: 0, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }], delivery: { route: { type: 'file', dir: 'outbox' } }, http: { address: '127.0.0.1', port: 0 } }, dir, 'test config');
  const env = (): Envelope => ({ id: newQueueId(), sender: 'app@example.test', recipients: [{ address: 'r@dest.test', status: 'pending' }], receivedAt: Date.now(), listener: 'open', client: '127.0.0.1', headerLength: 18, attempts: 0, nextAttemptAt: 0 });
  const body = Buffer.from('Subject: boundary\r\n\r\nbody\r\n');
  const delivered = () => (fs.existsSync(path.join(dir, 'outbox')) ? fs.readdirSync(path.join(dir, 'outbox')).filter((f) => f.endsWith('.eml')) : []);
  const until = async (check: () => boolean, what: string) => {
    for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
    if (!check()) throw new Error(`timed out waiting for ${what}`);
  };

  it('a segment sealed before its last message is handed over goes once that message is delivered, not before', async () => {
    const queue = new InlineQueue(config(), pino({ level: 'silent' }));
    const seals: SegmentSealed[] = [];
    const layout = new SpoolLayout(path.join(dir, 'spool'));
    const spool = new SpoolIntake(layout, { sealed: (s) => (seals.push(s), queue.sealed(s)) });
    await layout.open();
    await queue.start(await spool.recover());
    const first = await spool.append(env(), body);
    queue.enqueue(first);
    const last = await spool.append(env(), body);
    // The writer lets the quiet segment go while its last message is still on this side.
    await until(() => seals.length === 1, 'the seal');
    expect(seals[0]).toEqual({ segment: first.location!.segment, records: 2, refused: [] });
    // The first message is done (its mark is written, or the segment went wrongly with it).
    const segment = path.join(dir, 'spool', 'j', first.location!.segment);
    const marked = () => fs.existsSync(segment.replace('.log', '.done')) && fs.readFileSync(segment.replace('.log', '.done'), 'utf8').includes(first.envelope.id);
    await until(() => marked() || !fs.existsSync(segment), 'the first message marked done');
    expect(delivered()).toHaveLength(1);
    expect(fs.existsSync(segment)).toBe(true);
    queue.enqueue(last);
    await until(() => !fs.existsSync(segment), 'the segment deleted');
    expect(delivered()).toHaveLength(2);
    expect(await queue.stop(Date.now() + 1000)).toBe(0);
    await spool.close();
    expect((await new Spool(path.join(dir, 'spool')).scan()).entries).toEqual([]);
  });

  it('the main thread recovers; the queue delivers what it found and deletes the old segments', async () => {
    const before = new Spool(path.join(dir, 'spool'));
    await before.open();
    const kept = [await before.append(env(), body), await before.append(env(), body)];
    await before.close();
    const queue = new InlineQueue(config(), pino({ level: 'silent' }));
    const spool = new SpoolIntake(new SpoolLayout(path.join(dir, 'spool')), { sealed: (s) => queue.sealed(s) });
    const recovered = await spool.recover();
    expect(recovered.entries.map((e) => e.envelope.id)).toEqual(kept.map((e) => e.envelope.id));
    expect(recovered.segments).toEqual([{ segment: kept[0]!.location!.segment, records: 2, done: 0 }]);
    await queue.start(recovered);
    await until(() => delivered().length === 2 && fs.readdirSync(path.join(dir, 'spool', 'j')).length === 0, 'both delivered and the segment deleted');
    await queue.stop(Date.now() + 1000);
    await spool.close();
  });
});
