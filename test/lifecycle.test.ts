/**
 * The relay as a process: refusing a bad config before listening, surviving SIGKILL with
 * nothing acknowledged lost, draining on SIGTERM with the spool intact. Reloads: reload.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { canConnect, freePort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { spawnMailfleet, type RelayProcess } from './support/process.js';
import { Spool } from '../relay/spool/spool.js';
import { waitFor } from './support/relay.js';
import { SmtpTalk, submit } from './support/smtp-talk.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-life-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeConfig(dir: string, smtpPort: number, sinkPort: number, extra: Record<string, unknown> = {}): string {
  const file = path.join(dir, 'relay.yaml');
  const config = {
    hostname: 'relay.test',
    spool: { dir: 'spool', minFreeBytes: 0 },
    listeners: [{ name: 'in', address: '127.0.0.1', port: smtpPort, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
    delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sinkPort, tls: 'none' } },
    retry: { minBackoff: '200ms', maxBackoff: '500ms' },
    http: { address: '127.0.0.1', port: 0 },
    ...extra,
  };
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

function start(args: string[]): RelayProcess {
  const p = spawnMailfleet(args);
  cleanups.push(async () => {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
  });
  return p;
}

async function startSink(port?: number): Promise<ScriptedSink> {
  const sink = await startScriptedSink({ port });
  cleanups.push(() => sink.stop());
  return sink;
}

describe('relay process', () => {
  it('exits non-zero before listening when the config is invalid, naming the field', async () => {
    const dir = tempDir();
    const port = await freePort();
    const file = writeConfig(dir, port, 1, { retry: { minBackoff: 'often' }, limits: { maxRecipients: 0 } });
    const p = start(['relay', '--config', file]);
    expect(await p.exited).toBe(2);
    expect(p.output()).toMatch(/MF_CONFIG_INVALID: .*relay\.yaml is invalid/);
    expect(p.output()).toMatch(/retry\.minBackoff: "often" is not a duration/);
    expect(p.output()).toMatch(/limits\.maxRecipients: /);
    expect(await canConnect(port)).toBe(false);
  });

  it('exits 2 naming a smarthost credentials file that is missing or not username:password, before listening, without a stack trace', async () => {
    const dir = tempDir();
    const port = await freePort();
    const creds = path.join(dir, 'creds');
    fs.writeFileSync(creds, 'apikey-without-a-colon\n');
    const route = (extra: Record<string, unknown>) => ({ delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: 1, tls: 'none', ...extra } } });
    const bad = start(['relay', '--config', writeConfig(dir, port, 1, route({ credentialsFile: creds }))]);
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain(`MF_CREDENTIALS_UNREADABLE: ${creds} must hold "username:password" on its first line\n  hint: write the Secret key as username:password`);
    const missing = start(['relay', '--config', writeConfig(dir, port, 1, route({ usernameFile: path.join(dir, 'nope'), passwordFile: creds }))]);
    expect(await missing.exited).toBe(2);
    expect(missing.output()).toMatch(/MF_CREDENTIALS_UNREADABLE: cannot read smarthost credentials: ENOENT.*nope'\n {2}hint: mount the smarthost credentials Secret/);
    for (const p of [bad, missing]) expect(p.output()).not.toMatch(/^\s+at /m);
    expect(await canConnect(port)).toBe(false);
  });

  it('exits 2 with MF_LISTEN_FAILED, once and without a stack trace, when its port is taken', async () => {
    const dir = tempDir();
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => holder.close(() => r())));
    const port = (holder.address() as net.AddressInfo).port;
    const p = start(['relay', '--config', writeConfig(dir, port, 1)]);
    expect(await p.exited).toBe(2);
    expect(p.output()).toMatch(new RegExp(`MF_LISTEN_FAILED: cannot listen: listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}\n  hint: another process holds the port`));
    expect(p.output()).not.toMatch(/smtp listener error|"stack"/);
  });

  it('loses no acknowledged message when killed with SIGKILL mid-stream', async () => {
    const dir = tempDir();
    const sink = await startSink();
    const port = await freePort();
    const file = writeConfig(dir, port, sink.port);
    let relay = start(['relay', '--config', file]);
    await relay.waitForLog(/"event":"listening"/);

    const acknowledged = new Set<string>();
    let stop = false;
    const client = async (n: number) => {
      for (let i = 0; !stop; i++) {
        const id = `c${n}-${i}@crash.test`;
        const reply = await submit(port, 'app@example.test', ['r@dest.test'], `Message-ID: <${id}>\r\nSubject: ${id}\r\n\r\nbody\r\n`).catch(() => '');
        if (reply.startsWith('250')) acknowledged.add(id);
        if (!reply) await new Promise((r) => setTimeout(r, 20));
      }
    };
    const clients = Array.from({ length: 8 }, (_, n) => client(n));
    await waitFor(() => acknowledged.size >= 150, '150 acknowledged messages', 20_000);
    relay.child.kill('SIGKILL');
    expect(await relay.exited).toBe('SIGKILL');
    stop = true;
    await Promise.all(clients);

    relay = start(['relay', '--config', file]);
    await relay.waitForLog(/"event":"recovered"/);
    const delivered = () => sink.messages.map((m) => /Message-ID: <([^>]+)>/.exec(m.raw.toString())?.[1]);
    await waitFor(() => [...acknowledged].every((id) => delivered().includes(id)), 'every acknowledged message at the destination', 20_000);
    const ids = delivered();
    const duplicates = ids.length - new Set(ids).size;
    const lost = [...acknowledged].filter((id) => !ids.includes(id));
    console.log(`crash test: ${acknowledged.size} acknowledged, ${new Set(ids).size} distinct delivered, ${lost.length} lost, ${duplicates} duplicates`);
    expect(lost).toEqual([]);
  });

  it('refuses to start on a spool another relay holds, naming it, and keeps the message that relay is receiving', async () => {
    const dir = tempDir();
    const sink = await startSink();
    const [port, otherPort] = [await freePort(), await freePort()];
    const file = writeConfig(dir, port, sink.port);
    const first = start(['relay', '--config', file]);
    await first.waitForLog(/"event":"listening"/);
    // A large message half received: its bytes are in the spool's tmp/.
    const { talk } = await SmtpTalk.connect(port);
    cleanups.push(() => talk.quit());
    await talk.send('EHLO client.test');
    await talk.send('MAIL FROM:<app@example.test>');
    await talk.send('RCPT TO:<r@dest.test>');
    expect(await talk.send('DATA')).toMatch(/^354/);
    talk.write(`Message-ID: <held@lock.test>\r\nSubject: held\r\n\r\n${('z'.repeat(998) + '\r\n').repeat(400)}`);
    await waitFor(() => fs.readdirSync(path.join(dir, 'spool', 'tmp')).length > 0, 'the message on its way to the spool');

    const second = start(['relay', '--config', writeConfig(tempDir(), otherPort, sink.port, { spool: { dir: path.join(dir, 'spool'), minFreeBytes: 0 } })]);
    expect(await second.exited).toBe(2);
    expect(second.output()).toMatch(new RegExp(`MF_SPOOL_LOCKED: spool \\S+ is in use by pid ${first.child.pid} on ${os.hostname()}`));
    expect(await canConnect(otherPort)).toBe(false);

    talk.write('.\r\n');
    expect(await talk.reply()).toMatch(/^250 /);
    await waitFor(() => sink.messages.some((m) => m.raw.includes('<held@lock.test>')), 'the message at the destination');

    // A relay that died without letting go: its lock is stale at once on this host.
    first.child.kill('SIGKILL');
    await first.exited;
    const third = start(['relay', '--config', file]);
    await third.waitForLog(/"event":"listening"/);
    expect(third.output()).toMatch(new RegExp(`"event":"spool_lock_taken_over".*pid ${first.child.pid} on \\S+ no longer runs`));
    third.child.kill('SIGTERM');
    expect(await third.exited).toBe(0);
    expect(fs.existsSync(path.join(dir, 'spool', 'lock'))).toBe(false);
  });

  it('lets go of delivered mail: journal segments are deleted as they empty, and a restart delivers nothing again', async () => {
    const dir = tempDir();
    const sink = await startSink();
    const port = await freePort();
    const file = writeConfig(dir, port, sink.port);
    let relay = start(['relay', '--config', file]);
    await relay.waitForLog(/"event":"listening"/);
    const N = 60;
    await Promise.all(
      Array.from({ length: 6 }, async (_, c) => {
        for (let i = 0; i < N / 6; i++) expect(await submit(port, 'app@example.test', ['r@dest.test'], `Subject: once ${c}-${i}\r\n\r\nbody\r\n`)).toMatch(/^250/);
      }),
    );
    await sink.waitForMessages(N, 15_000);
    // The main thread appends to the journal; the queue, in its worker thread, marks what it
    // finished and deletes each segment the writer sealed once all its mail is out. A quiet
    // writer seals the segment in use too, so nothing is left.
    const journal = path.join(dir, 'spool', 'j');
    await waitFor(async () => (await new Spool(path.join(dir, 'spool')).scan()).entries.length === 0, 'no live message in the spool');
    await waitFor(() => fs.readdirSync(journal).length === 0, 'every journal segment deleted once the relay is quiet');
    relay.child.kill('SIGTERM');
    expect(await relay.exited).toBe(0);
    expect(relay.output()).toMatch(/stopped; 0 message\(s\) stay in the spool/);
    // Log lines are written in batches: at the exit every one is out, the queue worker's too.
    expect(relay.output().match(/"event":"received"/g)).toHaveLength(N);
    expect(relay.output().match(/"event":"delivered"/g)).toHaveLength(N);

    relay = start(['relay', '--config', file]);
    // A restart recovers nothing (the queue delivers only what it recovers or receives: nothing
    // goes out twice), and finds every segment finished and deletes it.
    await relay.waitForLog(/"event":"recovered","messages":0/);
    expect(fs.readdirSync(journal)).toEqual([]);
    expect(sink.messages).toHaveLength(N);
  });

  it("writes every log line before it exits, the queue worker's last ones too", async () => {
    const dir = tempDir();
    const sink = await startSink();
    const port = await freePort();
    const relay = start(['relay', '--config', writeConfig(dir, port, sink.port)]);
    await relay.waitForLog(/"event":"listening"/);
    const reply = await submit(port, 'app@example.test', ['r@dest.test'], 'Subject: last words\r\n\r\nbody\r\n');
    const queueId = /queued as (\S+)/.exec(reply)![1]!;
    await sink.waitForMessages(1);
    // At once: the worker's 'delivered' line is still in its buffer, if anywhere.
    relay.child.kill('SIGTERM');
    expect(await relay.exited).toBe(0);
    expect(relay.output()).toMatch(new RegExp(`"event":"delivered","queueId":"${queueId}"`));
  });

  it('drains on SIGTERM: finishes the open transaction, refuses new sessions, exits 0 with the spool intact', async () => {
    const dir = tempDir();
    const deadPort = await freePort();
    const port = await freePort();
    const file = writeConfig(dir, port, deadPort, { shutdown: { drainTimeout: '1s' } });
    let relay = start(['relay', '--config', file]);
    await relay.waitForLog(/"event":"listening"/);
    for (let i = 0; i < 3; i++) expect(await submit(port, 'app@example.test', ['r@dest.test'], `Subject: kept ${i}\r\n\r\nbody\r\n`)).toMatch(/^250/);

    const { talk } = await SmtpTalk.connect(port);
    await talk.send('EHLO client.test');
    await talk.send('MAIL FROM:<app@example.test>');
    await talk.send('RCPT TO:<r@dest.test>');
    relay.child.kill('SIGTERM');
    await relay.waitForLog(/"event":"draining"/);
    // A second SIGTERM (a supervisor's, or the relay's own when its queue worker dies) joins the drain, not ends it.
    relay.child.kill('SIGTERM');
    expect(await canConnect(port)).toBe(false);
    expect(await talk.data('Subject: in flight at SIGTERM\r\n\r\nbody\r\n')).toMatch(/^250/);
    await talk.quit();
    expect(await relay.exited).toBe(0);
    expect(relay.output()).toMatch(/stopped; 4 message\(s\) stay in the spool/);

    const sink = await startSink(deadPort);
    relay = start(['relay', '--config', file]);
    await sink.waitForMessages(4, 15_000);
    expect(sink.messages.map((m) => /Subject: (.*)/.exec(m.raw.toString())![1]).sort()).toEqual(['in flight at SIGTERM', 'kept 0', 'kept 1', 'kept 2']);
  });
});
