/**
 * Handoff between two real relays: A cannot deliver (its upstream answers 451), is told to
 * stop, and hands every queued message to B, which delivers them. Nothing is lost, nothing is
 * signed twice, and A leaves an empty spool; with no peer reachable A keeps its spool intact.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generateDkimKey } from '../relay/dkim-keys.js';
import { freePort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { HANDOFF_CONTENT_TYPE, HANDOFF_PATH } from '../relay/handoff.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const MSG = (n: number) => `From: App <app@example.test>\r\nTo: user${n}@dest.test\r\nSubject: handoff ${n}\r\nMessage-ID: <handoff-${n}@example.test>\r\n\r\nMessage number ${n}.\r\n`;

function keyFile(dir: string, name: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, generateDkimKey('ed25519-sha256').privateKeyPem);
  return file;
}

/** Messages go several at a time: each may meet the old peer before the first 400 is back. */
const HANDOFF_CONCURRENCY_BOUND = 8;

const counter = async (relay: TestRelay, direction: string) => Number(new RegExp(`mailfleet_relay_handoff_messages_total\\{direction="${direction}"\\} (\\d+)`).exec(await relay.metricsText())?.[1] ?? 0);

describe('handoff on shutdown', () => {
  const stops: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-handoff-'));
  const token = path.join(dir, 'token');
  fs.writeFileSync(token, 'fleet-secret-token\n');

  async function relayA(peers: string[], sink: ScriptedSink): Promise<TestRelay> {
    const a = await startTestRelay({
      senderDomains: [{ domain: 'example.test', dkim: { keys: [{ selector: 'a-ed', privateKeyFile: keyFile(dir, 'a.pem') }] } }],
      delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } },
      retry: { minBackoff: '1h', maxBackoff: '2h' },
      shutdown: { drainTimeout: '4s' },
      handoff: { tokenFile: token, peers, window: '2s' },
    });
    stops.push(() => a.stop());
    return a;
  }

  it('hands every queued message to a peer, which delivers each once with the signature made here', async () => {
    const sink = await startScriptedSink({ replies: () => ({ code: 451, message: '4.3.0 try later' }) });
    stops.push(() => sink.stop());
    // B signs example.test with another key: a message signed again would carry b-ed too.
    // A retry time travels with a message, but B tries it no later than its own first backoff.
    const b = await startTestRelay({
      senderDomains: [{ domain: 'example.test', dkim: { keys: [{ selector: 'b-ed', privateKeyFile: keyFile(dir, 'b.pem') }] } }],
      retry: { minBackoff: '300ms', maxBackoff: '1s' },
      handoff: { tokenFile: token },
    });
    stops.push(() => b.stop());
    const a = await relayA([`127.0.0.1:${b.httpPort}`], sink);

    for (let n = 0; n < 20; n++) expect(await submit(a.ports.open!, 'app@example.test', [`user${n}@dest.test`], MSG(n))).toMatch(/^250/);
    await waitFor(async () => (await a.queueStats()).deferred === 20, 'every message deferred at A');

    await a.shutdown();
    expect(await a.spooled()).toEqual([]);
    expect(await counter(a, 'sent')).toBe(20);
    await waitFor(() => b.delivered().length === 20, 'every message delivered by B');
    expect(await counter(b, 'received')).toBe(20);
    const delivered = b.delivered().map((m) => m.toString());
    expect(new Set(delivered.map((m) => /Subject: (handoff \d+)/.exec(m)![1])).size).toBe(20);
    for (const m of delivered) {
      expect(m.match(/^DKIM-Signature:/gm)).toHaveLength(1);
      expect(m).toMatch(/s=a-ed;/);
    }
  });

  it('a recipient that already failed still gets its DSN from the peer after a handoff', async () => {
    const sink = await startScriptedSink({ replies: ({ rcpt }) => (rcpt.startsWith('gone@') ? { code: 550, message: '5.1.1 no such user' } : { code: 451, message: '4.3.0 try later' }) });
    stops.push(() => sink.stop());
    const b = await startTestRelay({ retry: { minBackoff: '300ms', maxBackoff: '1s' }, handoff: { tokenFile: token } });
    stops.push(() => b.stop());
    const a = await relayA([`127.0.0.1:${b.httpPort}`], sink);
    expect(await submit(a.ports.open!, 'app@example.test', ['gone@dest.test', 'later@dest.test'], MSG(99))).toMatch(/^250/);
    await waitFor(async () => (await a.queueStats()).deferred === 1, 'the message deferred at A with one recipient failed');
    await a.shutdown();
    expect(await a.spooled()).toEqual([]);
    // B delivers the pending recipient and bounces the failed one to the sender: two messages.
    await waitFor(() => b.delivered().length === 2, 'the message and the DSN at B');
    const dsn = b.delivered().map((m) => m.toString()).find((m) => /report-type=delivery-status/.test(m));
    expect(dsn).toBeDefined();
    expect(dsn).toMatch(/Final-Recipient: rfc822; gone@dest\.test/i);
    expect(dsn).toMatch(/Status: 5\.1\.1/);
  });

  it('hands a message to a peer of the previous version (the envelope in a header) when it says 400 to the envelope in the body', async () => {
    const sink = await startScriptedSink({ replies: () => ({ code: 451, message: '4.3.0 try later' }) });
    stops.push(() => sink.stop());
    // What the receiver before version 2 did: the envelope from x-mailfleet-envelope, 400 without it.
    const taken: { envelope: { recipients: { address: string }[]; originId: string }; body: string }[] = [];
    let refused = 0;
    const old = http.createServer({ maxHeaderSize: 1024 * 1024 }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          const envelope = JSON.parse(Buffer.from(String(req.headers['x-mailfleet-envelope'] ?? ''), 'base64url').toString('utf8')) as (typeof taken)[number]['envelope'];
          taken.push({ envelope, body: Buffer.concat(chunks).toString() });
          res.writeHead(200).end('OLDPEER1\n');
        } catch (err) {
          refused++;
          res.writeHead(400).end(`bad envelope: ${(err as Error).message}\n`);
        }
      });
    });
    await new Promise<void>((resolve) => old.listen(0, '127.0.0.1', resolve));
    stops.push(() => new Promise((resolve) => old.close(resolve)));
    const a = await relayA([`127.0.0.1:${(old.address() as AddressInfo).port}`], sink);
    for (let n = 0; n < 3; n++) expect(await submit(a.ports.open!, 'app@example.test', [`user${n}@dest.test`], MSG(n))).toMatch(/^250/);
    await waitFor(async () => (await a.queueStats()).deferred === 3, 'every message deferred at A');
    await a.shutdown();
    expect(await a.spooled()).toEqual([]);
    expect(taken.map((t) => t.envelope.recipients[0]!.address).sort()).toEqual(['user0@dest.test', 'user1@dest.test', 'user2@dest.test']);
    for (const t of taken) expect(t.body).toMatch(/^Received: [^]*\r\nFrom: App <app@example.test>\r\n/);
    // Told once, the sender sends that peer the header form from then on.
    expect(refused).toBeLessThanOrEqual(HANDOFF_CONCURRENCY_BOUND);
  });

  it('refuses a handoff without the fleet token and keeps nothing', async () => {
    const b = await startTestRelay({ handoff: { tokenFile: token } });
    stops.push(() => b.stop());
    const post = (auth: string) =>
      fetch(`http://127.0.0.1:${b.httpPort}/internal/handoff`, {
        method: 'POST',
        headers: { authorization: auth, 'x-mailfleet-envelope': Buffer.from(JSON.stringify({ sender: 'a@x.test', recipients: ['b@y.test'], receivedAt: 1, listener: 'x', client: 'x', headerLength: 0, attempts: 0, nextAttemptAt: 1, originId: 'x' })).toString('base64url') },
        body: 'Subject: x\r\n\r\nx\r\n',
      });
    expect((await post('Bearer wrong')).status).toBe(401);
    expect((await post('')).status).toBe(401);
    expect(await b.spooled()).toEqual([]);
  });

  it('with no peer to take them, the messages stay in the spool for the next start, counted', async () => {
    const sink = await startScriptedSink({ replies: () => ({ code: 451, message: '4.3.0 try later' }) });
    stops.push(() => sink.stop());
    const nobody = await freePort();
    const a = await relayA([`127.0.0.1:${nobody}`], sink);
    for (let n = 0; n < 5; n++) expect(await submit(a.ports.open!, 'app@example.test', [`user${n}@dest.test`], MSG(n))).toMatch(/^250/);
    await waitFor(async () => (await a.queueStats()).deferred === 5, 'every message deferred at A');
    await a.shutdown();
    expect(await a.spooled()).toHaveLength(5);
    expect(await counter(a, 'left')).toBe(5);
    expect(await counter(a, 'sent')).toBe(0);
  });

  it('cuts off a peer still sending when the drain ends, instead of answering 200 into a spool nobody hands on', async () => {
    const b = await startTestRelay({ shutdown: { drainTimeout: '2s' }, handoff: { tokenFile: token, peers: [], window: '1s' } });
    stops.push(() => b.stop());
    const message = Buffer.from(MSG(7));
    const envelope = Buffer.from(JSON.stringify({ sender: 'app@example.test', recipients: [{ address: 'user7@dest.test', status: 'pending' }], receivedAt: Date.now(), listener: 'open', client: '127.0.0.1', headerLength: message.indexOf('\r\n\r\n') + 4, attempts: 1, nextAttemptAt: Date.now(), originId: 'A7' }));
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(envelope.length);
    const cut: (() => void)[] = [];
    const answer = new Promise<string>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: b.httpPort, method: 'POST', path: HANDOFF_PATH, headers: { authorization: 'Bearer fleet-secret-token', 'content-type': HANDOFF_CONTENT_TYPE, 'content-length': 4 + envelope.length + message.length } }, (res) => resolve(`HTTP ${res.statusCode}`));
      req.on('error', (err) => resolve(`error: ${err.message}`));
      req.write(Buffer.concat([prefix, envelope, message.subarray(0, 10)]));
      cut.push(() => req.end(message.subarray(10)));
    });
    // The request is in (past the accepting check) before the drain begins.
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    await b.shutdown();
    // The drain (2 s) and the HTTP port's grace (1 s), not the peer, decide when the relay stops.
    expect(Date.now() - started).toBeLessThan(6000);
    cut[0]!();
    // Cut off (or refused), so the peer keeps its copy and hands it to another relay.
    expect(await answer).toMatch(/^(error: |HTTP 503)/);
    expect((await b.spooled()).filter((e) => e.handedOverFrom === 'A7')).toEqual([]);
  });
});
