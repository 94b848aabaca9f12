/**
 * A scale-down carries the events: a stopping relay whose webhook has not taken its events
 * hands them to the peer that takes its mail, and the peer's webhook sends them, beside its
 * own handed_over and delivered events. Nothing the receiver was owed is missing.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startScriptedSink } from './peers/scripted-sink.js';
import { startWebhookReceiver } from './peers/webhook-receiver.js';
import { startTestRelay, waitFor } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const KEY = 'fleet-webhook-key-0123456789abcdefghijklmnop';

describe('events and the scale-down handoff', () => {
  const stops: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
  });

  it("hands the webhook's pending events to the peer with the mail; the peer sends them", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-events-handoff-'));
    stops.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'token'), 'fleet-secret-token\n');
    fs.writeFileSync(path.join(dir, 'key'), KEY);
    const receiver = await startWebhookReceiver({ keys: { k1: KEY } });
    stops.push(() => receiver.stop());
    receiver.failNext(1_000_000); // down for A's whole life
    const events = { webhooks: [{ name: 'app', url: receiver.url, signingKeys: [{ id: 'k1', secretFile: path.join(dir, 'key') }], maxBackoff: '500ms' }] };
    const deadSink = await startScriptedSink({ replies: () => ({ code: 451, message: '4.3.0 try later' }) });
    const liveSink = await startScriptedSink();
    stops.push(() => deadSink.stop(), () => liveSink.stop());

    const b = await startTestRelay({ delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: liveSink.port, tls: 'none' } }, retry: { minBackoff: '300ms', maxBackoff: '1s' }, handoff: { tokenFile: path.join(dir, 'token') }, events });
    stops.push(() => b.stop());
    const a = await startTestRelay({
      hostname: 'relay-a.test',
      delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: deadSink.port, tls: 'none' } },
      retry: { minBackoff: '1h', maxBackoff: '2h' },
      shutdown: { drainTimeout: '4s' },
      handoff: { tokenFile: path.join(dir, 'token'), peers: [`127.0.0.1:${b.httpPort}`], window: '2s' },
      events,
    });
    stops.push(() => a.stop());
    for (let n = 0; n < 5; n++) expect(await submit(a.ports.open!, 'app@example.test', [`user${n}@dest.test`], `Subject: ${n}\r\n\r\nHi.\r\n`)).toMatch(/^250/);
    await waitFor(async () => (await a.queueStats()).deferred === 5, 'every message deferred at A');

    await a.shutdown();
    receiver.failNext(0);
    await waitFor(() => receiver.events.filter((e) => e.type === 'delivered').length === 5, 'five deliveries by B at the webhook', 15_000);
    await waitFor(() => receiver.events.filter((e) => e.type === 'deferred').length === 5, "A's five deferrals, handed to B", 15_000);
    const of = (type: string) => receiver.events.filter((e) => e.type === type);
    // What A made, sent by B's webhook: A's queue ids, and A's name as the relay where it happened.
    const aQueueIds = of('received').map((e) => e.queueId).sort();
    expect(new Set(aQueueIds).size).toBe(5);
    expect(of('received').every((e) => e.relay === 'relay-a.test')).toBe(true);
    expect(of('deferred').every((e) => e.relay === 'relay-a.test')).toBe(true);
    // Which relay and pod took each message over (the pod is the host name: here, this machine's).
    expect(of('handed_over').every((e) => e.relay === 'relay.test' && e.pod === os.hostname())).toBe(true);
    expect(of('deferred').map((e) => e.queueId).sort()).toEqual(aQueueIds);
    expect(of('handed_over').map((e) => (e.handoff as { originQueueId: string }).originQueueId).sort()).toEqual(aQueueIds);
    // B delivers under its own queue ids; each handed_over event names the one it came from.
    const bIds = new Set(of('handed_over').map((e) => e.queueId));
    expect(of('delivered').every((e) => bIds.has(e.queueId))).toBe(true);
    expect(receiver.refused).toEqual([]);
  });
});
