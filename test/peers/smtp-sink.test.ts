import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
import { describePeer } from './availability.js';
import { canConnect } from './ports.js';
import { isAlive } from './proc.js';
import { parseSinkDump, runSmtpSource, SMTP_SINK_BINARIES, startSmtpSink } from './smtp-sink.js';
import { useTeardown } from './teardown.js';

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
