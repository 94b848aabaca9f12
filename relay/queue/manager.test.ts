import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { DeliveryFailure } from '../delivery/outcome.js';
import { createRoute, type Route } from '../delivery/routes.js';
import type { DkimSigner } from '../dkim.js';
import { QueueMetrics } from '../metrics.js';
import { QueueManager } from './manager.js';
import { Spool } from '../spool/spool.js';

const settings = { hostname: 'relay.test', messagesPerConnection: 10, maxConnections: 10, maxConnectionsPerDestination: 5, minBackoff: 60, maxBackoff: 3600, lifetime: 86400, delayNoticeAfter: 0, idleConnectionTime: 0 };

describe('queue and DKIM', () => {
  it('a signing failure defers the message: nothing leaves unsigned, and the next attempt signs', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-queue-'));
    const spool = new Spool(path.join(dir, 'spool'));
    await spool.open();
    const outbox = path.join(dir, 'outbox');
    let now = Date.parse('2026-11-28T10:00:00Z');
    let failing = true;
    const signer = {
      empty: false,
      sign: () => (failing ? Promise.reject(new Error('key store unavailable')) : Promise.resolve({ headers: 'DKIM-Signature: v=1; d=example.test; s=t; b=x\r\n', domain: 'example.test', algorithms: ['ed25519-sha256'] })),
    } as unknown as DkimSigner;
    const metrics = new QueueMetrics(() => queue.scheduler.stats(now));
    const queue: QueueManager = new QueueManager(settings, {
      spool,
      route: createRoute({ type: 'file', dir: outbox }, { heloName: 'relay.test', connectTimeoutMs: 1000, responseTimeoutMs: 1000, providers: [], tlsPolicy: { requireTls: [], mtaSts: 'off', mtaStsPort: 443 }, log: pino({ level: 'silent' }) }),
      log: pino({ level: 'silent' }),
      metrics,
      signer,
      now: () => now,
    });
    const body = Buffer.from('From: a@example.test\r\nTo: b@dest.test\r\nSubject: s\r\n\r\nbody\r\n');
    const entry = await spool.store({ sender: 'a@example.test', recipients: [{ address: 'b@dest.test', status: 'pending' }], receivedAt: now, listener: 'test', client: '127.0.0.1', headerLength: body.indexOf('\r\n\r\n') + 4, attempts: 0, nextAttemptAt: now }, body);
    queue.start();
    queue.enqueue(entry);

    const until = async (check: () => boolean) => {
      for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(check()).toBe(true);
    };
    await until(() => queue.scheduler.stats(now).deferred === 1);
    expect(fs.existsSync(outbox) ? fs.readdirSync(outbox) : []).toEqual([]);
    expect(entry.envelope.recipients[0]).toMatchObject({ status: 'pending', statusCode: '4.3.0' });
    expect(entry.envelope.recipients[0]!.lastReply).toMatch(/DKIM signing failed.*key store unavailable/);

    failing = false;
    now += 61_000;
    queue.pump();
    // The file route writes `.ID.eml.partial` and renames it: read only the finished file.
    const delivered = () => (fs.existsSync(outbox) ? fs.readdirSync(outbox).filter((f) => f.endsWith('.eml')) : []);
    await until(() => delivered().length === 1);
    const sent = fs.readFileSync(path.join(outbox, delivered()[0]!), 'utf8');
    expect(sent.startsWith('DKIM-Signature: v=1; d=example.test')).toBe(true);
    expect(sent).toContain('Subject: s');
    await queue.stop(Date.now() + 1000);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('delay notices', () => {
  it('sends one per message when several of its destinations defer at once', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-queue-'));
    const spool = new Spool(path.join(dir, 'spool'));
    await spool.open();
    const now = Date.parse('2026-11-28T10:00:00Z');
    // Every destination (a domain) refuses to connect for now, all in the same turn.
    const route: Route = {
      name: 'mx',
      destinationOf: (rcpt) => rcpt.split('@')[1]!,
      connect: (destination) => Promise.reject(new DeliveryFailure('deferred', '4.4.1', `connection refused (${destination})`)),
      providerOf: (destination) => Promise.resolve(destination),
    };
    const metrics = new QueueMetrics(() => queue.scheduler.stats(now));
    const queue: QueueManager = new QueueManager({ ...settings, delayNoticeAfter: 60 }, { spool, route, log: pino({ level: 'silent' }), metrics, now: () => now });
    const body = Buffer.from('From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n');
    const recipients = ['a@one.test', 'b@two.test', 'c@three.test'].map((address) => ({ address, status: 'pending' as const }));
    const entry = await spool.store({ sender: 'a@example.test', recipients, receivedAt: now - 3600_000, listener: 'test', client: '127.0.0.1', headerLength: body.indexOf('\r\n\r\n') + 4, attempts: 0, nextAttemptAt: now }, body);
    queue.start();
    queue.enqueue(entry);
    for (let i = 0; i < 200 && queue.scheduler.stats(now).deferred < 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect(queue.scheduler.stats(now).deferred).toBeGreaterThanOrEqual(3);
    // Stop waits for every connection's settlement, the notices they stored among them.
    await queue.stop(now + 1000);
    const notices = (await new Spool(path.join(dir, 'spool')).scan()).entries.filter((e) => e.envelope.sender === '');
    expect(notices).toHaveLength(1);
    expect(entry.envelope.delayNoticeSent).toBe(true);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('a reload that changes the route', () => {
  it('puts a unit that was in flight and then deferred under the new route, not under the old destination', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-queue-'));
    const spool = new Spool(path.join(dir, 'spool'));
    await spool.open();
    const now = Date.parse('2026-11-28T10:00:00Z');
    // The old route's attempt hangs until the test lets it defer, after the reload.
    let deferOld!: () => void;
    const attempt = new Promise<void>((resolve) => (deferOld = resolve));
    const session = { usable: true, close: () => undefined, deliver: async (m: { recipients: string[] }) => (await attempt, new DeliveryFailure('deferred', '4.4.1', 'try later').forRecipients(m.recipients)) };
    const smarthost: Route = { name: 'smarthost', destinationOf: () => 'smarthost:old.test:587', connect: () => Promise.resolve(session), providerOf: (d) => Promise.resolve(d) };
    const mx: Route = { name: 'mx', destinationOf: (rcpt) => rcpt.split('@')[1]!, connect: () => new Promise(() => undefined), providerOf: (d) => Promise.resolve(d) };
    const metrics = new QueueMetrics(() => queue.scheduler.stats(now));
    const queue: QueueManager = new QueueManager(settings, { spool, route: smarthost, log: pino({ level: 'silent' }), metrics, now: () => now });
    const body = Buffer.from('From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n');
    const recipients = ['a@one.test', 'b@two.test'].map((address) => ({ address, status: 'pending' as const }));
    const entry = await spool.store({ sender: 'a@example.test', recipients, receivedAt: now, listener: 'test', client: '127.0.0.1', headerLength: body.indexOf('\r\n\r\n') + 4, attempts: 0, nextAttemptAt: now }, body);
    queue.start();
    queue.enqueue(entry);
    const until = async (check: () => boolean) => {
      for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
      expect(check()).toBe(true);
    };
    await until(() => queue.scheduler.stats(now).inflight === 1);
    queue.reconfigure(settings, mx);
    deferOld();
    await until(() => queue.scheduler.stats(now).deferred === 2);
    const waiting = queue.scheduler.takeAllWaiting();
    expect(waiting.map((u) => [u.destination, u.recipients]).sort()).toEqual([
      ['one.test', ['a@one.test']],
      ['two.test', ['b@two.test']],
    ]);
    await queue.stop(now);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
