/**
 * Events after the 250, from the `mailfleet relay` process as it runs in a pod to a webhook
 * receiver written from docs/events.md: each message's life (received, deferred, delivered,
 * bounced, the notice to the sender) arrives signed, in spite of a receiver that fails, answers
 * late or is down while the relay is killed; tags and metadata ride on every event and never
 * reach the recipient.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitForPort } from './peers/ports.js';
import { testCa } from './peers/tls.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { startWebhookReceiver, type ReceivedEvent, type WebhookReceiver } from './peers/webhook-receiver.js';
import { spawnMailfleet, type RelayProcess } from './support/process.js';
import { waitFor } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const OLD_KEY = 'old-key-0123456789abcdefghijklmnopqrstuvwxyz';
const NEW_KEY = 'new-key-ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210';

let dir: string;
let sink: ScriptedSink;
let relay: RelayProcess | undefined;
let receiver: WebhookReceiver | undefined;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-events-'));
  fs.writeFileSync(path.join(dir, 'old-key'), `${OLD_KEY}\n`);
  fs.writeFileSync(path.join(dir, 'new-key'), `${NEW_KEY}\n`);
  sink = await startScriptedSink({
    replies: ({ rcpt, attempt }) => {
      if (rcpt.startsWith('gone@')) return { code: 550, message: '5.1.1 <gone@dest.test>: no such user' };
      if (rcpt.startsWith('later@') && attempt === 1) return { code: 451, message: '4.7.1 try again later' };
      return undefined;
    },
  });
});

afterEach(async () => {
  relay?.child.kill('SIGKILL');
  await relay?.exited;
  relay = undefined;
  await receiver?.stop();
  receiver = undefined;
});

afterAll(async () => {
  await sink.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Started {
  smtpPort: number;
  httpPort: number;
  spool: string;
  config: string;
}

async function startRelay(name: string, webhook: Record<string, unknown>, reuse?: Started): Promise<Started> {
  const started = reuse ?? { smtpPort: await freePort(), httpPort: await freePort(), spool: path.join(dir, name, 'spool'), config: path.join(dir, name, 'relay.yaml') };
  fs.mkdirSync(path.dirname(started.config), { recursive: true });
  const config = {
    hostname: 'relay-0.test',
    spool: { dir: started.spool, minFreeBytes: 0 },
    listeners: [{ name: 'in', address: '127.0.0.1', port: started.smtpPort, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
    senderDomains: [{ domain: 'example.test' }],
    delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } },
    retry: { minBackoff: '300ms', maxBackoff: '300ms' },
    http: { address: '127.0.0.1', port: started.httpPort },
    events: { webhooks: [{ name: 'app', signingKeys: [{ id: 'k-old', secretFile: path.join(dir, 'old-key') }, { id: 'k-new', secretFile: path.join(dir, 'new-key') }], maxBackoff: '1s', ...webhook }] },
  };
  fs.writeFileSync(started.config, JSON.stringify(config));
  relay = spawnMailfleet(['relay', '--config', started.config]);
  await waitForPort(started.smtpPort, { what: 'mailfleet relay' });
  await waitForPort(started.httpPort, { what: "mailfleet relay's metrics" });
  return started;
}

const message = (subject: string, extra = '') => `From: app@example.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.test>\r\n${extra}\r\nHello.\r\n`;

async function metric(port: number, line: RegExp): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = text.split('\n').find((l) => line.test(l));
  return m === undefined ? undefined : Number(m.split(' ').pop());
}

const of = (events: ReceivedEvent[], type: string, recipient?: string) => events.filter((e) => e.type === type && (!recipient || e.recipient === recipient));

describe('events to a webhook', () => {
  it("tells a message's whole life, signed with both keys, through a receiver that fails at first", async () => {
    receiver = await startWebhookReceiver({ keys: { 'k-new': NEW_KEY } }); // it knows only the new key: rotation
    receiver.failNext(2);
    const r = await startRelay('life', { url: receiver.url });
    const tags = 'X-Mailfleet-Tags: newsletter, december\r\nX-Mailfleet-Metadata: {"campaign": "winter",\r\n "customer": 4711}\r\n';
    expect(await submit(r.smtpPort, 'app@example.test', ['fine@dest.test', 'gone@dest.test', 'later@dest.test'], message('life', tags))).toMatch(/^250/);

    const events = receiver.events;
    await waitFor(() => of(events, 'delivered').length === 2 && of(events, 'notice_sent').length === 1, 'two deliveries, a bounce and its notice at the webhook', 20_000);
    const queueId = of(events, 'received')[0]!.queueId;
    expect(of(events, 'received').map((e) => e.recipient).sort()).toEqual(['fine@dest.test', 'gone@dest.test', 'later@dest.test']);
    const bounced = of(events, 'bounced', 'gone@dest.test');
    expect(bounced).toHaveLength(1);
    expect(bounced[0]).toMatchObject({
      queueId,
      messageId: '<life@example.test>',
      sender: 'app@example.test',
      senderDomain: 'example.test',
      relay: 'relay-0.test',
      attempt: 1,
      reply: { code: 550, enhancedCode: '5.1.1', text: expect.stringContaining('no such user') },
      bounce: { type: 'permanent', category: 'invalid_recipient' },
      tags: ['newsletter', 'december'],
      metadata: { campaign: 'winter', customer: '4711' },
    });
    expect(Date.parse(bounced[0]!.time as string)).toBeGreaterThan(Date.now() - 60_000);
    expect(of(events, 'deferred', 'later@dest.test')[0]).toMatchObject({ attempt: 1, reply: { code: 451, enhancedCode: '4.7.1' }, retryAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    expect(of(events, 'delivered', 'later@dest.test')[0]).toMatchObject({ attempt: 2, reply: { code: 250 } });
    expect(of(events, 'notice_sent', 'gone@dest.test')[0]).toMatchObject({ notice: { action: 'failed', queueId: expect.any(String) } });
    // The relay's own notice is no event of the sender's mail.
    expect(events.filter((e) => e.sender === '')).toEqual([]);
    // Order within one relay: received before anything else of that recipient.
    expect(events.findIndex((e) => e.type === 'received' && e.recipient === 'later@dest.test')).toBeLessThan(events.findIndex((e) => e.type === 'deferred'));
    // The stable ids: no two events share one.
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);

    expect(receiver.refused).toEqual([]);
    expect(new Set(receiver.verifiedBy)).toEqual(new Set(['k-new']));
    expect(receiver.duplicates).toBe(0);
    expect(await metric(r.httpPort, /^mailfleet_relay_webhook_requests_total\{webhook="app",result="http_error"\}/)).toBe(2);
    expect(await metric(r.httpPort, /^mailfleet_relay_webhook_events_sent_total\{webhook="app"\}/)).toBe(events.length);
    expect(await metric(r.httpPort, /^mailfleet_relay_webhook_backlog_events\{webhook="app"\}/)).toBe(0);

    // The application's fields never reach the recipient, and nothing else of the header changed.
    const delivered = sink.messages.find((m) => m.envelope.to.includes('fine@dest.test'))!.raw.toString('utf8');
    expect(delivered).not.toMatch(/X-Mailfleet-/i);
    expect(delivered).toMatch(/Subject: life\r\nMessage-ID: <life@example.test>\r\n\r\nHello\./);
  });

  it('refuses tags it cannot take with what is wrong, and takes nothing', async () => {
    receiver = await startWebhookReceiver({ keys: { 'k-new': NEW_KEY } });
    const r = await startRelay('bad-tags', { url: receiver.url });
    const reply = await submit(r.smtpPort, 'app@example.test', ['fine@dest.test'], message('bad', 'X-Mailfleet-Metadata: {"campaign": ["not", "a", "string"]}\r\n')).catch((e: Error) => e.message);
    expect(reply).toMatch(/550 5\.6\.0 X-Mailfleet-Metadata must be one JSON object .* the value of campaign is not/);
  });

  it('loses no event when the relay is killed while the webhook is down: they arrive after the restart', async () => {
    const port = await freePort();
    const r = await startRelay('kill', { url: `http://127.0.0.1:${port}/mail-events` });
    const before = sink.messages.length;
    for (let i = 0; i < 5; i++) expect(await submit(r.smtpPort, 'app@example.test', [`k${i}@dest.test`], message(`kill-${i}`))).toMatch(/^250/);
    await waitFor(() => sink.messages.length === before + 5, 'the five messages delivered');
    await waitFor(async () => (await metric(r.httpPort, /^mailfleet_relay_webhook_backlog_events\{webhook="app"\}/)) === 10, 'ten events in the outbox');
    // The webhook tries (after its linger) and fails: the age of what waits grows.
    await waitFor(async () => ((await metric(r.httpPort, /^mailfleet_relay_webhook_requests_total\{webhook="app",result="unreachable"\}/)) ?? 0) > 0, 'a failed POST');
    expect(await metric(r.httpPort, /^mailfleet_relay_webhook_oldest_event_age_seconds\{webhook="app"\}/)).toBeGreaterThan(0);
    relay!.child.kill('SIGKILL');
    await relay!.exited;

    receiver = await startWebhookReceiver({ keys: { 'k-old': OLD_KEY }, port });
    await startRelay('kill', { url: receiver.url }, r);
    await waitFor(() => receiver!.events.length === 10, 'all ten events after the restart', 20_000);
    for (let i = 0; i < 5; i++) {
      expect(of(receiver.events, 'received', `k${i}@dest.test`)).toHaveLength(1);
      expect(of(receiver.events, 'delivered', `k${i}@dest.test`)).toHaveLength(1);
    }
    await waitFor(async () => (await metric(r.httpPort, /^mailfleet_relay_webhook_backlog_events\{webhook="app"\}/)) === 0, 'an empty backlog');
    expect(fs.readdirSync(path.join(r.spool, 'events')).filter((f) => f.endsWith('.jsonl')).length).toBe(1); // finished segments are deleted
  });

  it('sends a batch again when the answer comes too late; the receiver sees the same ids', async () => {
    receiver = await startWebhookReceiver({ keys: { 'k-new': NEW_KEY } });
    receiver.answerLate(1, 1500);
    const r = await startRelay('late', { url: receiver.url, timeout: '500ms' });
    expect(await submit(r.smtpPort, 'app@example.test', ['late@dest.test'], message('late'))).toMatch(/^250/);
    await waitFor(() => of(receiver!.events, 'delivered').length === 1 && receiver!.duplicates > 0, 'the delivery, and the first batch twice', 20_000);
    expect(of(receiver.events, 'received')).toHaveLength(1);
    expect(await metric(r.httpPort, /^mailfleet_relay_webhook_requests_total\{webhook="app",result="timeout"\}/)).toBeGreaterThan(0);
  });

  it('sends over https to a receiver whose certificate a private CA signed (caFile), and refuses one it cannot verify', async () => {
    const ca = await testCa();
    try {
      receiver = await startWebhookReceiver({ keys: { 'k-new': NEW_KEY }, tls: await ca.issue('127.0.0.1') });
      const r = await startRelay('https', { url: receiver.url, caFile: ca.certFile });
      expect(await submit(r.smtpPort, 'app@example.test', ['tls@dest.test'], message('https'))).toMatch(/^250/);
      await waitFor(() => of(receiver!.events, 'delivered', 'tls@dest.test').length === 1, 'the events over https');
      relay!.child.kill('SIGKILL');
      await relay!.exited;
      // The same receiver without the CA: nothing goes, and the failure says why.
      const untrusted = await startRelay('https-untrusted', { url: receiver.url });
      expect(await submit(untrusted.smtpPort, 'app@example.test', ['tls2@dest.test'], message('https2'))).toMatch(/^250/);
      await relay!.waitForLog(/"event":"webhook_failed".*"result":"unreachable".*(self-signed|unable to verify|certificate)/);
      expect(of(receiver.events, 'received', 'tls2@dest.test')).toEqual([]);
    } finally {
      ca.cleanup();
    }
  });

  it('takes a webhook added by a reload, from the next event on', async () => {
    receiver = await startWebhookReceiver({ keys: { 'k-new': NEW_KEY } });
    const r = await startRelay('reload', { url: receiver.url });
    const config = JSON.parse(fs.readFileSync(r.config, 'utf8')) as { events: { webhooks: Record<string, unknown>[] } };
    const second = await startWebhookReceiver({ keys: { 'k-new': NEW_KEY } });
    try {
      config.events.webhooks.push({ ...config.events.webhooks[0], name: 'audit', url: second.url, types: ['bounced'] });
      fs.writeFileSync(r.config, JSON.stringify(config));
      relay!.child.kill('SIGHUP');
      await relay!.waitForLog(/"event":"config_reloaded"/);
      expect(await submit(r.smtpPort, 'app@example.test', ['fine@dest.test', 'gone@dest.test'], message('reload'))).toMatch(/^250/);
      await waitFor(() => of(receiver!.events, 'bounced').length === 1 && of(second.events, 'bounced').length === 1, 'the bounce at both webhooks');
      await waitFor(() => of(receiver!.events, 'delivered', 'fine@dest.test').length === 1, 'the delivery at the first');
      // The second takes only what it asked for.
      expect(new Set(second.events.map((e) => e.type))).toEqual(new Set(['bounced']));
      expect(await metric(r.httpPort, /^mailfleet_relay_webhook_events_sent_total\{webhook="audit"\}/)).toBe(1);
    } finally {
      await second.stop();
    }
  });

  it('does not start with a signing key it cannot read, and says which', async () => {
    const config = path.join(dir, 'no-key.yaml');
    fs.writeFileSync(
      config,
      JSON.stringify({
        spool: { dir: path.join(dir, 'no-key-spool') },
        listeners: [{ name: 'in', address: '127.0.0.1', port: await freePort(), tls: 'none', auth: 'none' }],
        delivery: { route: { type: 'file', dir: path.join(dir, 'no-key-out') } },
        http: { port: await freePort() },
        events: { webhooks: [{ name: 'app', url: 'https://hooks.example.test/', signingKeys: [{ id: 'k1', secretFile: path.join(dir, 'missing-key') }] }] },
      }),
    );
    const p = spawnMailfleet(['relay', '--config', config]);
    expect(await p.exited).toBe(2);
    expect(p.output()).toMatch(/MF_WEBHOOK_KEY_UNREADABLE: cannot read signing key k1 of webhook app: ENOENT/);
  });
});
