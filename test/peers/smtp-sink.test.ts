import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describePeer } from './availability.js';
import { canConnect } from './ports.js';
import { isAlive } from './proc.js';
import { parseSinkDump, runSmtpSource, SinkCounter, SMTP_SINK_BINARIES, startSmtpSink } from './smtp-sink.js';
import { useTeardown } from './teardown.js';

describe('SinkCounter', () => {
  it('reads the latest count from output that arrives in pieces, a line or a number cut anywhere', () => {
    const counter = new SinkCounter();
    expect(counter.feed('')).toBe(0);
    expect(counter.feed('sess=0 quit=0 mesg=1\rsess=0 quit=0 mesg=2\rsess=1 quit=1 me')).toBe(2);
    expect(counter.feed('sg=1')).toBe(2);
    expect(counter.feed('2\r')).toBe(12);
    expect(counter.feed('sess=1 quit=1 mesg=13\rsess=2 quit=2 mesg=13\r')).toBe(13);
    expect(counter.feed('')).toBe(13);
  });

  it('counts every message of a long run exactly, however the output is cut', () => {
    const output = Array.from({ length: 5000 }, (_, i) => `sess=${i} quit=${i} mesg=${i + 1}\r`).join('');
    for (const size of [1, 7, 4096]) {
      const counter = new SinkCounter();
      let seen = 0;
      for (let at = 0; at < output.length; at += size) seen = counter.feed(output.slice(at, at + size));
      expect(seen).toBe(5000);
    }
  });
});

describePeer('smtp-sink', SMTP_SINK_BINARIES, () => {
  const defer = useTeardown();

  it('counts what smtp-source sends, over new and reused connections', async () => {
    const sink = await startSmtpSink();
    defer(sink.stop);
    const fresh = await runSmtpSource({ port: sink.port, sessions: 4, count: 40, bytes: 500 });
    expect(fresh.code).toBe(0);
    await sink.waitForCount(40);
    const reused = await runSmtpSource({ port: sink.port, sessions: 2, count: 20, bytes: 500, reuse: true });
    expect(reused.code).toBe(0);
    await sink.waitForCount(60);
    expect(sink.count()).toBe(60);
    expect(fresh.durationMs).toBeGreaterThan(0);
  });

  it('dumps each message to a file, in arrival order; stop kills it by PID and removes its dir', async () => {
    const sink = await startSmtpSink({ dump: true });
    defer(sink.stop);
    for (const [i, to] of ['first@dest.test', 'second@dest.test'].entries()) {
      const r = await runSmtpSource({ port: sink.port, count: 1, bytes: 300 + i, from: 'src@client.test', to });
      expect(r.code).toBe(0);
      await sink.waitForCount(i + 1);
    }
    const dumps = sink.messages().map(parseSinkDump);
    expect(dumps.map((d) => [d.mailFrom, d.rcptTo])).toEqual([
      ['src@client.test', ['first@dest.test']],
      ['src@client.test', ['second@dest.test']],
    ]);
    // smtp-source's message: its headers, then the body; LF line ends in the dump.
    const message = dumps[0]?.message.toString() ?? '';
    expect(message).toMatch(/^From: <src@client\.test>\nTo: <first@dest\.test>\n/);
    expect(message).not.toContain('\r');

    const dir = sink.dumpDir ?? '';
    await sink.stop();
    expect(isAlive(sink.pid)).toBe(false);
    expect(await canConnect(sink.port)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });
});
