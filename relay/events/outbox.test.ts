import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RelayEvent } from './event.js';
import { EventOutbox } from './outbox.js';

let dir: string;
beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-outbox-'))));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const event = (n: number, senderDomain = 'example.test'): RelayEvent => ({ id: `e${n}`, type: 'delivered', time: new Date(n).toISOString(), relay: 'r', queueId: 'Q', sender: 's@example.test', senderDomain, recipient: `r${n}@dest.test`, attempt: 1 });
const ids = (events: RelayEvent[] | undefined) => events?.map((e) => e.id);

describe('the events outbox', () => {
  it('each webhook reads from its own place, and moves on only when it acknowledges', async () => {
    const outbox = EventOutbox.open(dir, ['a', 'b'], { maxBytes: 1 << 20 });
    outbox.append([event(1), event(2), event(3)]);
    const a = await outbox.read('a', 2);
    expect(ids(a?.events)).toEqual(['e1', 'e2']);
    expect(ids((await outbox.read('a', 2))?.events)).toEqual(['e1', 'e2']); // not acknowledged: the same again
    outbox.ack('a', a!.end);
    expect(ids((await outbox.read('a', 10))?.events)).toEqual(['e3']);
    expect(outbox.backlog('a')).toBe(1);
    expect(outbox.backlog('b')).toBe(3);
    expect(ids((await outbox.read('b', 10, (e) => e.id !== 'e2'))?.events)).toEqual(['e1', 'e3']);
    outbox.close();
  });

  it('a reopened outbox goes on where each webhook was; a new webhook starts at the end, a removed one is forgotten', async () => {
    let outbox = EventOutbox.open(dir, ['a'], { maxBytes: 1 << 20 });
    outbox.append([event(1), event(2)]);
    outbox.ack('a', (await outbox.read('a', 1))!.end);
    outbox.close();
    outbox = EventOutbox.open(dir, ['a', 'c'], { maxBytes: 1 << 20 });
    outbox.append([event(3)]);
    expect(ids((await outbox.read('a', 10))?.events)).toEqual(['e2', 'e3']); // across segments
    expect(ids((await outbox.read('c', 10))?.events)).toEqual(['e3']);
    outbox.setWebhooks(['c']);
    expect(outbox.backlog('a')).toBe(0);
    // Only c's place counts now: the first segment, which only a needed, is gone.
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl'))).toEqual(['00000002.jsonl']);
    outbox.close();
  });

  it('skips a line torn by a crash and goes on after it', async () => {
    let outbox = EventOutbox.open(dir, ['a'], { maxBytes: 1 << 20 });
    outbox.append([event(1)]);
    outbox.close();
    fs.appendFileSync(path.join(dir, '00000001.jsonl'), '{"id":"e2","ty');
    outbox = EventOutbox.open(dir, ['a'], { maxBytes: 1 << 20 });
    outbox.append([event(3)]);
    const batch = await outbox.read('a', 10);
    expect(ids(batch?.events)).toEqual(['e1', 'e3']);
    expect(batch?.unreadable).toBe(1);
    outbox.ack('a', batch!.end);
    expect(await outbox.read('a', 10)).toBeUndefined();
    outbox.close();
  });

  it('past maxBytes drops the oldest segment, counting what each webhook had not read; appending never waits', async () => {
    const dropped: [string, number][] = [];
    const outbox = EventOutbox.open(dir, ['slow', 'fast'], { maxBytes: 1 << 20, onDropped: (w, n) => dropped.push([w, n]) });
    const batch = Array.from({ length: 100 }, (_, i) => event(i, 'x'.repeat(2000)));
    let appended = 0;
    let fastAt = 0;
    while (!dropped.length) {
      outbox.append(batch);
      appended += batch.length;
      for (let b = await outbox.read('fast', 1000); b; b = await outbox.read('fast', 1000)) {
        fastAt += b.events.length;
        outbox.ack('fast', b.end);
      }
    }
    expect(fastAt).toBe(appended);
    expect(dropped.every(([w]) => w === 'slow')).toBe(true);
    const lost = dropped.reduce((n, [, k]) => n + k, 0);
    expect(outbox.backlog('slow')).toBe(appended - lost);
    const size = fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl')).reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0);
    expect(size).toBeLessThanOrEqual(1 << 20);
    outbox.close();
  });

  it('writes nothing without a webhook', () => {
    const outbox = EventOutbox.open(dir, [], { maxBytes: 1 << 20 });
    outbox.append([event(1)]);
    expect(fs.statSync(path.join(dir, '00000001.jsonl')).size).toBe(0);
    outbox.close();
  });
});
