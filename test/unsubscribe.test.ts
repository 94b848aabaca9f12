/**
 * One-click unsubscribe (RFC 8058) as the parties outside see it: the message that reaches the
 * MX carries List-Unsubscribe (https and mailto) and List-Unsubscribe-Post, both covered by
 * every DKIM signature, as dkimpy and mailauth (verifiers nobody here wrote) find against the
 * records `mailfleet records` printed, served by dnsmasq. Then the link is used as a mailbox
 * provider uses it (a POST), as a person does (Debian's Chromium opens the page and clicks its
 * button) and by mail to the mailto address (sent to the `bounces` listener): each time the next
 * message to that recipient is refused at RCPT, and the webhook hears `unsubscribed`. A link
 * made up or altered serves nothing and suppresses nobody; a GET never unsubscribes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dkimVerify } from 'mailauth';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { generateDkimKey } from '../relay/dkim-keys.js';
import { describePeer } from './peers/availability.js';
import { CHROMIUM_BINARIES, launchChromium } from './peers/chromium.js';
import { DNSMASQ_BINARIES, type Dnsmasq } from './peers/dnsmasq.js';
import { freePort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { startWebhookReceiver, type WebhookReceiver } from './peers/webhook-receiver.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';
import { dkimpy, PYTHON, serveRecords } from './support/dkim-verify.js';

const WEBHOOK_KEY = 'webhook-key-0123456789abcdefghijklmnopqrstuv';



/** A header field's unfolded value, from a message's header section. */
function field(raw: Buffer, name: string): string[] {
  const header = raw.subarray(0, raw.indexOf('\r\n\r\n')).toString().replace(/\r\n[ \t]+/g, ' ');
  return header
    .split('\r\n')
    .filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    .map((l) => l.slice(name.length + 1).trim());
}

const MESSAGE = (to: string, extra = '') =>
  `From: News <news@sender.test>\r\nTo: ${to}\r\nSubject: Our December letter\r\n${extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nWhat happened this month.\r\n`;

describePeer('one-click unsubscribe: signed headers, the POST, the page in Chromium, the mailto', [...DNSMASQ_BINARIES, PYTHON, ...CHROMIUM_BINARIES], () => {
  const stops: (() => unknown)[] = [];
  let dnsmasq: Dnsmasq;
  let sink: ScriptedSink;
  let relay: TestRelay;
  let receiver: WebhookReceiver;
  let linksPort: number;
  let bouncesPort: number;

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-unsubscribe-'));
    stops.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const keys = (['rsa-sha256', 'ed25519-sha256'] as const).map((algorithm) => {
      const file = path.join(dir, `${algorithm}.pem`);
      fs.writeFileSync(file, generateDkimKey(algorithm).privateKeyPem);
      return { selector: algorithm === 'rsa-sha256' ? 'mf-rsa' : 'mf-ed', privateKeyFile: file };
    });
    fs.writeFileSync(path.join(dir, 'links-key'), 'links-key-0123456789abcdefghijklmnopqrstuvwxyz');
    fs.writeFileSync(path.join(dir, 'bounces-key'), 'bounces-key-0123456789abcdefghijklmnopqrstuvwxyz');
    fs.writeFileSync(path.join(dir, 'webhook-key'), WEBHOOK_KEY);
    receiver = await startWebhookReceiver({ keys: { k1: WEBHOOK_KEY } });
    stops.push(receiver.stop);
    sink = await startScriptedSink({ hostname: 'mx.receiver.test' });
    stops.push(sink.stop);
    const dnsPort = await freePort();
    linksPort = await freePort();
    bouncesPort = await freePort();
    relay = await startTestRelay({
      listeners: [
        { name: 'open', address: '127.0.0.1', port: 0, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] },
        { name: 'bounces', address: '127.0.0.1', port: bouncesPort, tls: 'none', auth: 'none', role: 'bounces' },
      ],
      senderDomains: [{ domain: 'sender.test', dkim: { keys }, returnPath: 'bounces.sender.test', unsubscribe: { url: `http://127.0.0.1:${linksPort}` } }],
      links: { keyFile: path.join(dir, 'links-key'), port: linksPort },
      bounces: { keyFile: path.join(dir, 'bounces-key') },
      delivery: { route: { type: 'mx', dnsServers: [`127.0.0.1:${dnsPort}`], port: sink.port } },
      events: { webhooks: [{ name: 'app', url: receiver.url, signingKeys: [{ id: 'k1', secretFile: path.join(dir, 'webhook-key') }], maxBackoff: '1s' }] },
    });
    stops.push(relay.stop);
    dnsmasq = await serveRecords(relay.dir, dnsPort);
    stops.push(dnsmasq.stop);
  });
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  /** Sends one message through the relay and returns it as the MX received it (found by a marker: deliveries overlap). */
  let sent = 0;
  async function delivered(to: string[], extra = ''): Promise<Buffer> {
    const marker = `X-Test-Marker: ${++sent}\r\n`;
    expect(await submit(relay.ports.open!, 'news@sender.test', to, MESSAGE(to.join(', '), marker + extra))).toMatch(/^250/);
    const mine = () => sink.messages.find((m) => m.raw.includes(marker));
    await waitFor(() => !!mine(), 'the message at the MX');
    return mine()!.raw;
  }
  const httpsLink = (raw: Buffer) => /<(http:\/\/[^>]+)>/.exec(field(raw, 'List-Unsubscribe')[0] ?? '')?.[1];
  const accepted = async (to: string) => (await submit(relay.ports.open!, 'news@sender.test', [to], MESSAGE(to))).slice(0, 3);
  const unsubscribed = (recipient: string) => receiver.events.filter((e) => e.type === 'unsubscribed' && e.recipient === recipient);

  it('a message to one recipient leaves with List-Unsubscribe (the link and the mailto) and List-Unsubscribe-Post, both signed: dkimpy and mailauth verify', async () => {
    const raw = await delivered(['reader@receiver.test']);
    const [list] = field(raw, 'List-Unsubscribe');
    expect(list).toMatch(new RegExp(`^<http://127\\.0\\.0\\.1:${linksPort}/u/[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{22}>, <mailto:unsubscribe@bounces\\.sender\\.test\\?subject=[A-Za-z0-9_.-]+>$`));
    expect(field(raw, 'List-Unsubscribe-Post')).toEqual(['List-Unsubscribe=One-Click']);
    const verdicts = dkimpy(raw, dnsmasq.port);
    expect(verdicts.map((v) => v.ok)).toEqual([true, true]);
    for (const v of verdicts) expect(v.h.split(':')).toEqual(expect.arrayContaining(['list-unsubscribe', 'list-unsubscribe-post']));
    const resolver = dnsmasq.resolver();
    const { results } = await dkimVerify(raw, { resolver: ((name: string, type: string) => resolver.resolve(name, type)) as never });
    expect(results.map((r) => r.status.result)).toEqual(['pass', 'pass']);
    // Changing the link after signing breaks both signatures.
    const changed = Buffer.from(raw.toString('latin1').replace('/u/', '/u/x'), 'latin1');
    expect(dkimpy(changed, dnsmasq.port).map((v) => v.ok)).toEqual([false, false]);
  });

  it("keeps a message's own List-Unsubscribe, and adds none to a message for two recipients (a link names one)", async () => {
    const own = await delivered(['own@receiver.test'], 'List-Unsubscribe: <https://app.sender.test/stop?u=42>\r\n');
    expect(field(own, 'List-Unsubscribe')).toEqual(['<https://app.sender.test/stop?u=42>']);
    expect(field(own, 'List-Unsubscribe-Post')).toEqual([]);
    const two = await delivered(['a@receiver.test', 'b@receiver.test']);
    expect(field(two, 'List-Unsubscribe')).toEqual([]);
    const metrics = await relay.metricsText();
    expect(metrics).toMatch(/mailfleet_relay_unsubscribe_headers_total\{result="has_own"\} 1/);
    expect(metrics).toMatch(/mailfleet_relay_unsubscribe_headers_total\{result="several_recipients"\} 1/);
  });

  it('a one-click POST, as a mailbox provider sends it, suppresses the recipient: the next message is refused at RCPT, and the webhook hears unsubscribed once', async () => {
    const link = httpsLink(await delivered(['clicker@receiver.test']))!;
    // A GET (a link scanner, a preview) shows the page and changes nothing.
    const page = await fetch(link);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('clicker@receiver.test');
    expect(await accepted('clicker@receiver.test')).toBe('250');
    for (let i = 0; i < 2; i++) {
      const res = await fetch(link, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('You are unsubscribed');
    }
    const refused = await submit(relay.ports.open!, 'news@sender.test', ['clicker@receiver.test'], MESSAGE('clicker@receiver.test'));
    expect(refused).toMatch(/^550 5\.1\.1 .*clicker@receiver\.test.*the recipient unsubscribed/);
    // A subdomain of the sender domain is covered too.
    expect((await submit(relay.ports.open!, 'alerts@mail.sender.test', ['clicker@receiver.test'], MESSAGE('clicker@receiver.test'))).slice(0, 3)).toBe('550');
    await waitFor(() => unsubscribed('clicker@receiver.test').length === 1, 'the event', 10_000);
    expect(unsubscribed('clicker@receiver.test')[0]).toMatchObject({ senderDomain: 'sender.test', unsubscribe: { via: 'one_click' } });
    // Both POSTs made the same event: the receiver saw it once more as a duplicate, never as a second unsubscribe.
    await waitFor(() => receiver.duplicates >= 1, 'the duplicate', 10_000);
    expect(unsubscribed('clicker@receiver.test')).toHaveLength(1);
    expect(await relay.metricsText()).toMatch(/mailfleet_relay_sender_domain_reports_total\{sender_domain="sender.test",type="unsubscribed"\} 2/);
  });

  it('a link made up or altered is refused with a page that says so, and suppresses nobody; a POST without List-Unsubscribe=One-Click is refused', async () => {
    const link = httpsLink(await delivered(['careful@receiver.test']))!;
    const [payload, mac] = link.slice(link.lastIndexOf('/') + 1).split('.') as [string, string];
    const otherPayload = Buffer.from(Buffer.from(payload, 'base64url').toString().replace('careful@', 'victim@')).toString('base64url');
    const forged = [`${link.slice(0, link.lastIndexOf('/') + 1)}${payload}.${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}`, `${link.slice(0, link.lastIndexOf('/') + 1)}${otherPayload}.${mac}`, link.slice(0, -3)];
    for (const url of forged) {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
      expect(res.status).toBe(404);
      expect(await res.text()).toContain('This link is not valid');
    }
    const wrongBody = await fetch(link, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'unsubscribe=yes' });
    expect(wrongBody.status).toBe(400);
    expect(await accepted('careful@receiver.test')).toBe('250');
    expect(await accepted('victim@receiver.test')).toBe('250');
    expect(await relay.metricsText()).toMatch(/mailfleet_relay_unsubscribes_total\{via="one_click",result="refused"\} 3/);
  });

  it("in Chromium: the link opens a page that names the recipient and the sender domain; its button unsubscribes", async () => {
    const link = httpsLink(await delivered(['person@receiver.test']))!;
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const opened = await page.goto(link);
      expect(opened?.status()).toBe(200);
      expect(await page.$eval('body', (b) => b.textContent)).toContain('Stop mail from sender.test to person@receiver.test?');
      expect(await accepted('person@receiver.test')).toBe('250');
      const [done] = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
      expect(done?.status()).toBe(200);
      expect(await page.$eval('h1', (h) => h.textContent)).toBe('You are unsubscribed');
    } finally {
      await browser.cleanup();
    }
    expect(await accepted('person@receiver.test')).toBe('550');
    await waitFor(() => unsubscribed('person@receiver.test').length === 1, 'the event', 10_000);
    expect(unsubscribed('person@receiver.test')[0]).toMatchObject({ unsubscribe: { via: 'page' } });
  });

  it('mail to the mailto address, with the subject as given, unsubscribes through the bounces listener; a subject without a valid token does not', async () => {
    const raw = await delivered(['writer@receiver.test']);
    const mailto = /<mailto:([^?]+)\?subject=([^>]+)>/.exec(field(raw, 'List-Unsubscribe')[0]!)!;
    const bogus = `From: <writer@receiver.test>\r\nTo: <${mailto[1]}>\r\nSubject: please stop\r\n\r\n\r\n`;
    expect(await submit(bouncesPort, 'writer@receiver.test', [mailto[1]!], bogus)).toMatch(/^250 .*no valid unsubscribe token/);
    expect(await accepted('writer@receiver.test')).toBe('250');
    const request = `From: <writer@receiver.test>\r\nTo: <${mailto[1]}>\r\nSubject: ${decodeURIComponent(mailto[2]!)}\r\n\r\n\r\n`;
    expect(await submit(bouncesPort, 'writer@receiver.test', [mailto[1]!], request)).toMatch(/^250 .*Unsubscribed/);
    expect(await accepted('writer@receiver.test')).toBe('550');
    await waitFor(() => unsubscribed('writer@receiver.test').length === 1, 'the event', 10_000);
    expect(unsubscribed('writer@receiver.test')[0]).toMatchObject({ unsubscribe: { via: 'mailto' } });
    // The listener still takes nothing else: another mailbox at the return path domain is refused.
    expect(await submit(bouncesPort, 'writer@receiver.test', ['someone@bounces.sender.test'], request)).toMatch(/^550 /);
  });
});
