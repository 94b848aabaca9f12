/**
 * The relay's HTTP port against hostile and broken clients (issue 14): malformed handoffs,
 * requests that never finish, floods of header bytes. After each the relay answers its probes
 * and /metrics, and a deferred message is still retried.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { HANDOFF_CONTENT_TYPE } from '../relay/handoff.js';
import { freePort } from './peers/ports.js';
import { startScriptedSink } from './peers/scripted-sink.js';
import { spawnMailfleet, type RelayProcess } from './support/process.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const TOKEN = 'fleet-secret-token';
const MESSAGE = 'From: app@example.test\r\nTo: user@dest.test\r\nSubject: handed over\r\nMessage-ID: <handed@example.test>\r\n\r\nHello.\r\n';
const HEADER_LENGTH = MESSAGE.indexOf('\r\n\r\n') + 4;

const envelope = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  sender: 'app@example.test',
  recipients: [{ address: 'user@dest.test', status: 'pending' }],
  receivedAt: Date.now(),
  listener: 'open',
  client: '10.0.0.7',
  headerLength: HEADER_LENGTH,
  attempts: 1,
  nextAttemptAt: Date.now(),
  originId: 'ORIGIN1',
  ...over,
});

/** The version-2 body: a 4-byte length, the envelope JSON, the message. */
function framed(env: unknown, message = MESSAGE): Buffer {
  const json = Buffer.from(JSON.stringify(env));
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(json.length);
  return Buffer.concat([prefix, json, Buffer.from(message)]);
}

const handoffUrl = (relay: TestRelay) => `http://127.0.0.1:${relay.httpPort}/internal/handoff`;

function postFramed(relay: TestRelay, env: unknown, message = MESSAGE) {
  return fetch(handoffUrl(relay), { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': HANDOFF_CONTENT_TYPE }, body: framed(env, message) });
}

/** The form relays before version 2 send: the envelope base64url-encoded in a header. */
function postLegacy(relay: TestRelay, env: unknown, message = MESSAGE) {
  return fetch(handoffUrl(relay), {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream', 'x-mailfleet-envelope': Buffer.from(JSON.stringify(env)).toString('base64url') },
    body: message,
  });
}

/** Sends raw bytes and resolves with everything the server answered before it closed (or after `ms`). */
function rawExchange(port: number, bytes: string | Buffer, ms = 5000): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    const timer = setTimeout(() => socket.destroy(), ms);
    socket.on('data', (d) => (answer += d.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
  });
}

describe('malformed handoffs', () => {
  const stops: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-hostile-'));
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, `${TOKEN}\n`);
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function relayWithSink(firstReply: 'defer' | 'accept') {
    // The first attempt of each recipient is deferred (or not), every later one delivered.
    const sink = await startScriptedSink({ replies: ({ attempt }) => (firstReply === 'defer' && attempt === 1 ? { code: 451, message: '4.3.0 try later' } : undefined) });
    stops.push(() => sink.stop());
    const relay = await startTestRelay({
      delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } },
      retry: { minBackoff: '1s', maxBackoff: '2s' },
      handoff: { tokenFile },
    });
    stops.push(() => relay.stop());
    return { sink, relay };
  }

  it('refuses a handoff without a numeric retry time (400 naming nextAttemptAt), and the deferred mail is still retried', async () => {
    const { sink, relay } = await relayWithSink('defer');
    expect(await submit(relay.ports.open!, 'app@example.test', ['waiting@dest.test'], MESSAGE)).toMatch(/^250/);
    await waitFor(async () => (await relay.queueStats()).deferred === 1, 'the message deferred after its first attempt');

    // As the relays before the fix sent it (the header form): it was answered 200, its NaN due
    // time sat at the root of the retry heap, and nothing deferred was tried again.
    const { nextAttemptAt: _n, ...noRetryTime } = envelope({ recipients: [{ address: 'poison@dest.test', status: 'pending' }] });
    const legacy = await postLegacy(relay, noRetryTime);
    expect(legacy.status).toBe(400);
    expect(await legacy.text()).toMatch(/^bad envelope: nextAttemptAt: /);
    const framedAnswer = await postFramed(relay, { ...noRetryTime, nextAttemptAt: 'soon' });
    expect(framedAnswer.status).toBe(400);
    expect(await framedAnswer.text()).toMatch(/^bad envelope: nextAttemptAt: /);

    await waitFor(() => sink.messages.some((m) => m.envelope.to.includes('waiting@dest.test')), 'the deferred message delivered at its retry', 20_000);
    expect(sink.messages.some((m) => m.envelope.to.includes('poison@dest.test'))).toBe(false);
    await waitFor(async () => (await relay.spooled()).length === 0, 'an empty spool');
    expect(await relay.metricsText()).toMatch(/^mailfleet_relay_queue_overdue_seconds 0$/m);
  });

  it.each([
    ['a header field smuggled after the DKIM signature', { dkimSignature: 'DKIM-Signature: v=1; d=example.test; b=x\r\nBcc: victim@evil.test\r\n' }, 'dkimSignature: '],
    ['a CRLF in a recipient address', { recipients: [{ address: 'a@dest.test>\r\nRCPT TO:<b@evil.test', status: 'pending' }] }, 'recipients.0.address: must not contain CR, LF'],
    ['an unknown recipient status', { recipients: [{ address: 'a@dest.test', status: 'sent' }] }, 'recipients.0.status: '],
    ['a header longer than the message', { headerLength: 10_000 }, 'headerLength: 10000 is beyond'],
    ['an unknown field', { priority: 'high' }, 'priority: unknown field'],
    ['a fractional attempt count', { attempts: 0.5 }, 'attempts: '],
  ])('refuses %s with 400 naming the field, and keeps nothing', async (_what, change, message) => {
    const { relay } = await relayWithSink('accept');
    for (const post of [postFramed, postLegacy]) {
      const r = await post(relay, envelope(change));
      expect(r.status).toBe(400);
      expect(await r.text()).toContain(`bad envelope: ${message}`);
      expect(r.headers.get('x-mailfleet-handoff')).toBe('2');
    }
    expect(await relay.spooled()).toEqual([]);
  });

  it('takes the envelope in the body, and in a header from a peer of the previous version while it fits the header limit (431 beyond it)', async () => {
    const { sink, relay } = await relayWithSink('accept');
    const framedAnswer = await postFramed(relay, envelope({ recipients: [{ address: 'framed@dest.test', status: 'pending' }] }));
    expect(framedAnswer.status).toBe(200);
    const legacy = await postLegacy(relay, envelope({ recipients: [{ address: 'legacy@dest.test', status: 'pending' }] }));
    expect(legacy.status).toBe(200);
    await waitFor(() => sink.messages.length === 2, 'both handed-over messages delivered');
    expect(sink.messages.map((m) => m.envelope.to[0]).sort()).toEqual(['framed@dest.test', 'legacy@dest.test']);

    // 1,000 recipients: about 80 KiB of header, past the 64 KiB limit. The old sender tries its other peers.
    const many = Array.from({ length: 1000 }, (_, i) => ({ address: `recipient-${i}@dest.test`, status: 'pending' }));
    expect((await postLegacy(relay, envelope({ recipients: many }))).status).toBe(431);
    // The same envelope in the body is taken.
    expect((await postFramed(relay, envelope({ recipients: many }))).status).toBe(200);
    await waitFor(() => sink.messages.length === 3, 'the 1,000-recipient message delivered');
  });

  it('answers 401 before reading any of the body, and bounds the envelope and the other endpoints\' bodies', async () => {
    const { relay } = await relayWithSink('accept');
    // 50 MB announced, none sent: the answer comes anyway, and the connection closes.
    const head = (auth: string, type = HANDOFF_CONTENT_TYPE) => `POST /internal/handoff HTTP/1.1\r\nHost: relay\r\nAuthorization: ${auth}\r\nContent-Type: ${type}\r\nContent-Length: 50000000\r\n\r\n`;
    expect(await rawExchange(relay.httpPort, head('Bearer wrong'))).toMatch(/^HTTP\/1\.1 401 [^]*connection: close/i);
    // An envelope length past the cap: refused from the 4-byte prefix alone.
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(0xffffffff);
    expect(await rawExchange(relay.httpPort, Buffer.concat([Buffer.from(head(`Bearer ${TOKEN}`)), prefix]))).toMatch(/^HTTP\/1\.1 413 [^]*envelope of 4294967295 bytes/i);
    // /metrics, /readyz and /admin take no body.
    const r = await fetch(`http://127.0.0.1:${relay.httpPort}/readyz`, { method: 'POST', body: 'x'.repeat(100_000) });
    expect(r.status).toBe(413);
    expect(await relay.spooled()).toEqual([]);
  });
});

/** VmRSS of a process in bytes. */
const rss = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
const MB = 1024 * 1024;

describe('a flood of unfinished requests with big headers', { timeout: 120_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-flood-'));
  let relay: RelayProcess | undefined;
  const sockets: net.Socket[] = [];
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    relay?.child.kill('SIGKILL');
    if (relay) await relay.exited;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('holds the relay\'s memory to a bound that returns to the baseline; /metrics and /readyz answer throughout', async () => {
    const [smtp, http] = [await freePort(), await freePort()];
    fs.writeFileSync(path.join(dir, 'token'), `${TOKEN}\n`);
    const config = {
      hostname: 'relay.test',
      spool: { dir: path.join(dir, 'spool'), minFreeBytes: 0 },
      listeners: [{ name: 'apps', address: '127.0.0.1', port: smtp, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
      delivery: { route: { type: 'file', dir: path.join(dir, 'outbox') } },
      http: { address: '127.0.0.1', port: http },
      handoff: { tokenFile: path.join(dir, 'token') },
      log: { level: 'warn' },
    };
    fs.writeFileSync(path.join(dir, 'relay.yaml'), JSON.stringify(config));
    relay = spawnMailfleet(['relay', '--config', path.join(dir, 'relay.yaml')]);
    const pid = relay.child.pid!;
    const get = async (p: string) => {
      const started = Date.now();
      const r = await fetch(`http://127.0.0.1:${http}${p}`, { signal: AbortSignal.timeout(15_000) });
      await r.text();
      return { status: r.status, ms: Date.now() - started };
    };
    await waitFor(async () => (await get('/readyz').catch(() => ({ status: 0 }))).status === 200, 'the relay ready', 30_000);
    for (let i = 0; i < 5; i++) await get('/metrics');
    const baseline = rss(pid);

    // 300 connections from 10 addresses (as many clients), each sending a request line and
    // header fields without end: just under 1 MiB each (the header limit before the fix), or 12 KiB
    // and then nothing (an unfinished request within the limit, held until a timeout).
    const closed: Promise<void>[] = [];
    const pad = `x-pad: ${'a'.repeat(4090)}\r\n`;
    for (let i = 0; i < 300; i++) {
      const socket = net.connect({ port: http, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 10)}` });
      sockets.push(socket);
      socket.on('error', () => undefined);
      // Read what the server answers (431, 408), or its close would go unnoticed here.
      socket.resume();
      closed.push(new Promise((resolve) => socket.on('close', () => resolve())));
      const fields = i % 2 ? 3 : 250;
      socket.on('connect', async () => {
        socket.write('POST /internal/handoff HTTP/1.1\r\nHost: relay\r\n');
        for (let f = 0; f < fields && !socket.destroyed; f++) {
          if (!socket.write(pad)) await new Promise((resolve) => socket.once('drain', resolve).once('close', resolve));
        }
      });
    }
    // Wait until every connection was refused or has sent all it meant to.
    await waitFor(() => sockets.every((s) => s.destroyed || s.bytesWritten >= (sockets.indexOf(s) % 2 ? 3 : 250) * pad.length), 'the flood sent', 60_000);
    const during = rss(pid);
    const probes = [await get('/readyz'), await get('/metrics'), await get('/healthz')];
    process.stdout.write(`http flood: RSS ${Math.round(baseline / MB)} MB before, ${Math.round(during / MB)} MB during; probes ${probes.map((p) => `${p.status} in ${p.ms} ms`).join(', ')}\n`);
    expect(probes.map((p) => p.status)).toEqual([200, 200, 200]);
    for (const p of probes) expect(p.ms).toBeLessThan(5000);
    expect(during - baseline).toBeLessThan(64 * MB);

    // The server itself ends the unfinished requests (headers timeout): we close nothing.
    await Promise.race([Promise.all(closed), new Promise((_, reject) => setTimeout(() => reject(new Error('the relay kept unfinished requests open for 40 s')), 40_000))]);
    for (let i = 0; i < 3; i++) await get('/metrics');
    await waitFor(() => rss(pid) - baseline < 32 * MB, `RSS back within 32 MB of the ${Math.round(baseline / MB)} MB baseline (now ${Math.round(rss(pid) / MB)} MB)`, 30_000);
    process.stdout.write(`http flood: RSS ${Math.round(rss(pid) / MB)} MB after\n`);
    expect(relay.child.exitCode).toBeNull();
  });
});
