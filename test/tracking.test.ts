/**
 * Open and click tracking as the outside sees it. An HTML newsletter (multipart/alternative
 * with a quoted-printable text part, an HTML part and a PDF attachment) leaves the relay with
 * its links rewritten to the tracking host and a pixel added, signed after the rewrite:
 * dkimpy and mailauth verify it, and Python's email package (a parser nobody here wrote)
 * finds the same parts, the attachment byte for byte. Debian's Chromium opens the HTML as a
 * mail program shows it: the pixel loads (an `opened` event) and a click follows the 307 to
 * the shop's page (a `clicked` event naming the URL). A link made up or altered redirects
 * nowhere; a scanner's HEAD and Gmail's image proxy are recorded but flagged, and left out
 * of the rates.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
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
import { dkimpy, PYTHON, serveRecords } from './support/dkim-verify.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const WEBHOOK_KEY = 'webhook-key-0123456789abcdefghijklmnopqrstuv';
const CHROME_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
const PDF = Buffer.from('%PDF-1.4\n% a made-up attachment with http://inside.test/ in it\n').toString('base64');

/** Python's email package: each leaf part's type and decoded payload (hex), for comparing structures. */
function pythonParts(raw: Buffer): { type: string; filename: string | null; payload: string }[] {
  const script = `
import email, json, sys
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
print(json.dumps([{'type': p.get_content_type(), 'filename': p.get_filename(), 'payload': (p.get_payload(decode=True) or b'').hex()} for p in m.walk() if not p.is_multipart()]))`;
  const run = spawnSync(PYTHON, ['-c', script], { input: raw });
  if (run.status !== 0) throw new Error(`python email: ${run.stderr.toString()}`);
  return JSON.parse(run.stdout.toString()) as ReturnType<typeof pythonParts>;
}

describePeer('open and click tracking: the rewrite signed, the pixel and the click in Chromium', [...DNSMASQ_BINARIES, PYTHON, ...CHROMIUM_BINARIES], () => {
  const stops: (() => unknown)[] = [];
  let dnsmasq: Dnsmasq;
  let sink: ScriptedSink;
  let relay: TestRelay;
  let receiver: WebhookReceiver;
  let linksPort: number;
  let shop: string;

  const newsletter = (to: string, marker: string) =>
    [
      'From: News <news@sender.test>',
      `To: ${to}`,
      'Subject: Our December letter',
      `X-Test-Marker: ${marker}`,
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="MIX"',
      '',
      '--MIX',
      'Content-Type: multipart/alternative; boundary="ALT"',
      '',
      '--ALT',
      'Content-Type: text/plain; charset=iso-8859-1',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      `Caf=E9 news. Our shop: ${shop}/product?id=3D42`,
      '--ALT',
      'Content-Type: text/html; charset=utf-8',
      'Content-Transfer-Encoding: 8bit',
      '',
      `<html><body><h1>Café news</h1><p><a id="shop" href="${shop}/product?id=42">Visit the shop</a></p><p><a href="https://private.test/" data-mailfleet-track="off">private</a></p><p><a id="cafe" href="${shop}/café?q=grüße">Café</a></p></body></html>`,
      '--ALT--',
      '',
      '--MIX',
      'Content-Type: application/pdf; name=letter.pdf',
      'Content-Disposition: attachment; filename=letter.pdf',
      'Content-Transfer-Encoding: base64',
      '',
      PDF,
      '--MIX--',
      '',
    ].join('\r\n');

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-tracking-'));
    stops.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const keyFile = path.join(dir, 'rsa.pem');
    fs.writeFileSync(keyFile, generateDkimKey('rsa-sha256').privateKeyPem);
    fs.writeFileSync(path.join(dir, 'links-key'), 'links-key-0123456789abcdefghijklmnopqrstuvwxyz');
    fs.writeFileSync(path.join(dir, 'webhook-key'), WEBHOOK_KEY);
    // The shop the links lead to.
    const shopServer = http.createServer((req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(`<html><body><h1>Product ${new URL(req.url!, 'http://x').searchParams.get('id')}</h1></body></html>`));
    await new Promise<void>((r) => shopServer.listen(0, '127.0.0.1', r));
    shop = `http://127.0.0.1:${(shopServer.address() as { port: number }).port}`;
    stops.push(() => new Promise((r) => shopServer.close(r)));
    receiver = await startWebhookReceiver({ keys: { k1: WEBHOOK_KEY } });
    stops.push(receiver.stop);
    sink = await startScriptedSink({ hostname: 'mx.receiver.test' });
    stops.push(sink.stop);
    const dnsPort = await freePort();
    linksPort = await freePort();
    relay = await startTestRelay({
      senderDomains: [{ domain: 'sender.test', dkim: { keys: [{ selector: 'mf', privateKeyFile: keyFile }] }, tracking: { url: `http://127.0.0.1:${linksPort}` } }],
      links: { keyFile: path.join(dir, 'links-key'), port: linksPort },
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

  let sent = 0;
  async function delivered(to: string[], message = newsletter): Promise<{ raw: Buffer; original: Buffer }> {
    const marker = String(++sent);
    const original = Buffer.from(message(to.join(', '), marker));
    expect(await submit(relay.ports.open!, 'news@sender.test', to, original.toString())).toMatch(/^250/);
    const mine = () => sink.messages.find((m) => m.raw.includes(`X-Test-Marker: ${marker}\r\n`));
    await waitFor(() => !!mine(), 'the message at the MX');
    return { raw: mine()!.raw, original };
  }
  const htmlOf = (raw: Buffer) => Buffer.from(pythonParts(raw).find((p) => p.type === 'text/html')!.payload, 'hex').toString('utf8');
  const events = (type: string, recipient: string) => receiver.events.filter((e) => e.type === type && e.recipient === recipient);

  it('rewrites the links of the text and HTML parts and adds a pixel before signing: dkimpy and mailauth verify, and Python finds the same parts, the attachment byte for byte', async () => {
    const { raw, original } = await delivered(['reader@receiver.test']);
    const out = pythonParts(raw);
    const sentParts = pythonParts(original);
    expect(out.map((p) => `${p.type} ${p.filename}`)).toEqual(sentParts.map((p) => `${p.type} ${p.filename}`));
    expect(out[2]!.payload).toBe(sentParts[2]!.payload);
    const text = Buffer.from(out[0]!.payload, 'hex').toString('latin1');
    expect(text).toMatch(new RegExp(`^Caf\u00e9 news\\. Our shop: http://127\\.0\\.0\\.1:${linksPort}/c/[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{22}\\r?\\n?$`));
    const html = htmlOf(raw);
    expect(html).toMatch(new RegExp(`<a id="shop" href="http://127\\.0\\.0\\.1:${linksPort}/c/[^"]+">Visit the shop</a>`));
    expect(html).toContain('<a href="https://private.test/" data-mailfleet-track="off">private</a>');
    expect(html).toMatch(new RegExp(`<img src="http://127\\.0\\.0\\.1:${linksPort}/o/[^"]+"[^>]*></body>`));
    expect(dkimpy(raw, dnsmasq.port).map((v) => v.ok)).toEqual([true]);
    const resolver = dnsmasq.resolver();
    const { results } = await dkimVerify(raw, { resolver: ((name: string, type: string) => resolver.resolve(name, type)) as never });
    expect(results.map((r) => r.status.result)).toEqual(['pass']);
    expect(await relay.metricsText()).toMatch(/mailfleet_relay_tracked_messages_total\{result="rewritten"\} [1-9]/);
  });

  it('in Chromium: the pixel loads (opened) and a click follows the 307 to the shop (clicked, with the URL)', async () => {
    const { raw } = await delivered(['person@receiver.test']);
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.setUserAgent(CHROME_UA);
      await page.setContent(htmlOf(raw), { waitUntil: 'load' });
      await waitFor(() => events('opened', 'person@receiver.test').length === 1, 'the opened event', 10_000);
      await Promise.all([page.waitForNavigation(), page.click('#shop')]);
      expect(page.url()).toBe(`${shop}/product?id=42`);
      expect(await page.$eval('h1', (h) => h.textContent)).toBe('Product 42');
    } finally {
      await browser.cleanup();
    }
    await waitFor(() => events('clicked', 'person@receiver.test').length === 1, 'the clicked event', 10_000);
    expect(events('opened', 'person@receiver.test')[0]).toMatchObject({ senderDomain: 'sender.test', client: { userAgent: CHROME_UA } });
    expect(events('opened', 'person@receiver.test')[0]!.client).not.toHaveProperty('scanner');
    expect(events('clicked', 'person@receiver.test')[0]).toMatchObject({ click: { url: `${shop}/product?id=42` }, client: { userAgent: CHROME_UA } });
    const metrics = await relay.metricsText();
    expect(metrics).toMatch(/mailfleet_relay_sender_domain_reports_total\{sender_domain="sender.test",type="opened"\} 1/);
    expect(metrics).toMatch(/mailfleet_relay_sender_domain_reports_total\{sender_domain="sender.test",type="clicked"\} 1/);
  });

  it('a link made up or altered redirects nowhere; a scanner and an image proxy are recorded, flagged, and left out of the rates', async () => {
    const { raw } = await delivered(['flagged@receiver.test']);
    const html = htmlOf(raw);
    const click = /href="(http:\/\/127\.0\.0\.1:\d+\/c\/[^"]+)"/.exec(html)![1]!;
    const pixel = /<img src="([^"]+)"/.exec(html)![1]!;
    const [payload, mac] = click.slice(click.lastIndexOf('/') + 1).split('.') as [string, string];
    const evil = Buffer.from(Buffer.from(payload, 'base64url').toString().replace(shop, 'https://evil.test')).toString('base64url');
    for (const url of [`${click.slice(0, click.lastIndexOf('/') + 1)}${evil}.${mac}`, click.slice(0, -2), click.replace('/c/', '/o/')]) {
      const res = await fetch(url, { redirect: 'manual', headers: { 'user-agent': CHROME_UA } });
      expect(res.status, url).toBe(404);
      expect(res.headers.get('location')).toBeNull();
    }
    // A link with non-ASCII characters (UTF-8 in the HTML) redirects as a browser would ask for it.
    const cafe = /<a id="cafe" href="([^"]+)"/.exec(html)![1]!;
    const toCafe = await fetch(cafe, { redirect: 'manual', headers: { 'user-agent': CHROME_UA } });
    expect(toCafe.status).toBe(307);
    expect(toCafe.headers.get('location')).toBe(`${shop}/caf%C3%A9?q=gr%C3%BC%C3%9Fe`);
    const head = await fetch(click, { method: 'HEAD', redirect: 'manual', headers: { 'user-agent': CHROME_UA } });
    expect(head.status).toBe(307);
    expect(head.headers.get('location')).toBe(`${shop}/product?id=42`);
    const proxied = await fetch(pixel, { headers: { 'user-agent': 'Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)' } });
    expect(proxied.headers.get('content-type')).toBe('image/gif');
    await waitFor(() => events('clicked', 'flagged@receiver.test').length === 2 && events('opened', 'flagged@receiver.test').length === 1, 'the flagged events', 10_000);
    expect(events('clicked', 'flagged@receiver.test').find((e) => (e.click as { url: string }).url === `${shop}/product?id=42`)!.client).toMatchObject({ scanner: true });
    expect(events('clicked', 'flagged@receiver.test').find((e) => (e.click as { url: string }).url === `${shop}/café?q=grüße`)!.client).not.toHaveProperty('scanner');
    expect(events('opened', 'flagged@receiver.test')[0]!.client).toMatchObject({ proxy: 'google' });
    const metrics = await relay.metricsText();
    expect(metrics).toMatch(/mailfleet_relay_tracking_requests_total\{kind="click",client="refused"\} 2/);
    expect(metrics).toMatch(/mailfleet_relay_tracking_requests_total\{kind="open",client="refused"\} 1/);
    expect(metrics).toMatch(/mailfleet_relay_tracking_requests_total\{kind="click",client="scanner"\} 1/);
    expect(metrics).toMatch(/mailfleet_relay_tracking_requests_total\{kind="open",client="proxy"\} 1/);
    // The person's open and click of the test before, and no more.
    expect(metrics).toMatch(/mailfleet_relay_sender_domain_reports_total\{sender_domain="sender.test",type="opened"\} 1/);
  });

  it('leaves mail to several recipients as it was sent (a link names one recipient)', async () => {
    const { raw, original } = await delivered(['a@receiver.test', 'b@receiver.test']);
    expect(pythonParts(raw)).toEqual(pythonParts(original));
  });
});
