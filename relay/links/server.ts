/**
 * The `links` endpoint: the public HTTP server behind the links the relay puts in mail: the
 * open pixel and the click redirects of tracking (below), and one-click unsubscribe (RFC 8058): `POST /u/TOKEN` with `List-Unsubscribe=One-Click` (what a
 * mailbox provider sends when its user clicks "unsubscribe") puts the recipient on the sender
 * domain's suppression list and makes an `unsubscribed` event; `GET /u/TOKEN` (a person who
 * opened the link) shows a page whose button sends that POST. A GET never unsubscribes: link
 * scanners and previews fetch every URL in a message.
 *
 * It faces the internet (through an Ingress), so it reads little: no body but a form of at
 * most 1 KiB, headers within 10 s, and nothing it serves names anything beyond what the
 * signed token itself says. Every request it cannot serve is answered; none is redirected.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import type { Logger } from 'pino';
import type { RelayEvent, UnsubscribeVia } from '../events/event.js';
import { trackingEvent, unsubscribeEvent } from '../events/event.js';
import type { IntakeMetrics } from '../metrics.js';
import { UNSUBSCRIBE_PREFIX, type HardBounceCandidate } from '../suppression.js';
import { readLinkToken, type LinkSubject } from './token.js';
import { classifyClient } from './clients.js';
import { CLICK_PATH, OPEN_PATH } from './tracking.js';
import { UNSUBSCRIBE_PATH } from './unsubscribe.js';

const MAX_BODY = 1024;
const MAX_CONNECTIONS = 512;
const ONE_CLICK = 'List-Unsubscribe=One-Click';

export interface LinksDeps {
  /** The fleet's link key, as last (re)loaded. */
  key: () => string | undefined;
  hostname: () => string;
  pod: string;
  publish: (events: RelayEvent[]) => Promise<number>;
  suppress: (candidate: HardBounceCandidate) => void;
  metrics: IntakeMetrics;
  log: Logger;
  now: () => number;
}

/**
 * Records an unsubscribe: the event first (if it cannot be written the caller answers 503 and
 * the provider or person tries again), then the suppression. Shared with the mailto way
 * (relay/bounces/inbound.ts).
 */
export async function unsubscribe(subject: LinkSubject, via: UnsubscribeVia, deps: Pick<LinksDeps, 'hostname' | 'pod' | 'publish' | 'suppress' | 'metrics' | 'log' | 'now'>): Promise<void> {
  const now = deps.now();
  await deps.publish([unsubscribeEvent(subject, { relay: deps.hostname(), pod: deps.pod, now }, via)]);
  deps.suppress({ sender: '', senderDomain: subject.senderDomain, unsubscribe: true, recipient: subject.recipient, statusCode: '5.7.1', reply: `${UNSUBSCRIBE_PREFIX}(${via.replace('_', '-')}) from message ${subject.queueId}`, at: now });
  deps.metrics.unsubscribes.inc({ via, result: 'taken' });
  deps.metrics.senderDomainReports.inc({ sender_domain: subject.senderDomain, type: 'unsubscribed' });
  deps.log.info({ event: 'unsubscribed', via, queueId: subject.queueId, senderDomain: subject.senderDomain, recipientDomain: subject.recipient.slice(subject.recipient.lastIndexOf('@') + 1) }, `a recipient unsubscribed from ${subject.senderDomain} (${via})`);
}

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A small page that needs nothing from elsewhere (the CSP forbids it). */
function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<title>${escape(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}button{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}</style>
</head><body><h1>${escape(title)}</h1>${body}</body></html>
`;
}

const HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};

const NOT_VALID = page('This link is not valid', '<p>This unsubscribe link was not made by this sender, or it was changed or cut short. Open the link in the message again, or use the unsubscribe button of your mail program.</p>');

/** The request's form body, at most MAX_BODY bytes; undefined when it is larger. */
function readForm(req: http.IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length'] ?? 0) > MAX_BODY) return resolve(undefined);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        resolve(undefined);
        req.destroy();
      } else chunks.push(c);
    });
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });
}

async function serve(deps: LinksDeps, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const reply = (code: number, body: string, extra: Record<string, string> = {}) => {
    res.writeHead(code, { ...HEADERS, ...(req.complete ? {} : { connection: 'close' }), ...extra });
    res.end(body);
  };
  const pathname = (req.url ?? '/').split('?')[0]!;
  if (pathname === '/healthz') return reply(200, 'ok\n', { 'content-type': 'text/plain; charset=utf-8' });
  if (pathname.startsWith(OPEN_PATH) || pathname.startsWith(CLICK_PATH)) return tracked(deps, req, res, pathname);
  if (!pathname.startsWith(UNSUBSCRIBE_PATH)) return reply(404, page('Not found', '<p>Nothing is served here.</p>'));
  if (req.method !== 'GET' && req.method !== 'POST' && req.method !== 'HEAD') return reply(405, page('Method not allowed', '<p>Use GET or POST.</p>'), { allow: 'GET, HEAD, POST' });
  const key = deps.key();
  const read = key ? readLinkToken(pathname.slice(UNSUBSCRIBE_PATH.length), key) : undefined;
  const subject = read?.kind === 'u' ? read : undefined;
  if (!subject) {
    if (req.method === 'POST') deps.metrics.unsubscribes.inc({ via: 'one_click', result: 'refused' });
    return reply(404, NOT_VALID);
  }
  const who = `<p><b>${escape(subject.recipient)}</b> will get no more mail from <b>${escape(subject.senderDomain)}</b>.</p>`;
  if (req.method !== 'POST') {
    // The form posts what a mailbox provider posts, and says it came from this page.
    return reply(200, page('Unsubscribe', `<p>Stop mail from <b>${escape(subject.senderDomain)}</b> to <b>${escape(subject.recipient)}</b>?</p><form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><input type="hidden" name="from" value="page"><button type="submit">Unsubscribe</button></form>`));
  }
  const form = await readForm(req);
  if (form === undefined) return reply(413, page('Request too large', '<p>An unsubscribe request is a short form.</p>'));
  const fields = new URLSearchParams(form);
  if (fields.get('List-Unsubscribe') !== 'One-Click') return reply(400, page('Not an unsubscribe request', `<p>A one-click unsubscribe POST carries <code>${ONE_CLICK}</code> (RFC 8058).</p>`));
  try {
    await unsubscribe(subject, fields.get('from') === 'page' ? 'page' : 'one_click', deps);
  } catch (err) {
    deps.log.error({ err, queueId: subject.queueId }, 'could not record an unsubscribe; the client is told to try again');
    return reply(503, page('Please try again', '<p>The unsubscribe could not be recorded just now. Please try again in a minute.</p>'), { 'retry-after': '60' });
  }
  reply(200, page('You are unsubscribed', who));
}

/** A transparent 1×1 GIF. */
const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

/**
 * The pixel (GET /o/TOKEN: the GIF, never cached) and a click (GET /c/TOKEN: 307 to the URL
 * the token carries, which only this fleet's key signs, so never an open redirect). Each makes
 * an `opened` or `clicked` event, flagged when a proxy or a scanner fetched it. The person
 * gets the pixel or the page even when the event cannot be written (it is logged).
 */
async function tracked(deps: LinksDeps, req: http.IncomingMessage, res: http.ServerResponse, pathname: string): Promise<void> {
  const open = pathname.startsWith(OPEN_PATH);
  const key = deps.key();
  const subject = key ? readLinkToken(pathname.slice((open ? OPEN_PATH : CLICK_PATH).length), key) : undefined;
  const valid = subject && subject.kind === (open ? 'o' : 'c') ? subject : undefined;
  const kind = open ? 'open' : 'click';
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { ...HEADERS, allow: 'GET, HEAD' }).end(page('Method not allowed', '<p>Use GET.</p>'));
    return;
  }
  if (!valid) {
    deps.metrics.trackingRequests.inc({ kind, client: 'refused' });
    res.writeHead(404, HEADERS).end(open ? '' : NOT_VALID);
    return;
  }
  const client = classifyClient(req.method, req.headers['user-agent']);
  const who = client.proxy ? 'proxy' : client.scanner ? 'scanner' : 'person';
  deps.metrics.trackingRequests.inc({ kind, client: who });
  if (who === 'person') deps.metrics.senderDomainReports.inc({ sender_domain: valid.senderDomain, type: open ? 'opened' : 'clicked' });
  const event = trackingEvent(valid, { relay: deps.hostname(), pod: deps.pod, now: deps.now() }, open ? 'opened' : 'clicked', client, crypto.randomBytes(6).toString('hex'));
  await deps.publish([event]).catch((err: Error) => deps.log.error({ err, queueId: valid.queueId }, `could not record an ${event.type} event`));
  if (open) res.writeHead(200, { 'content-type': 'image/gif', 'content-length': PIXEL.length, 'cache-control': 'no-store, no-cache, must-revalidate, private', expires: '0' }).end(PIXEL);
  else {
    // As a browser would send it: non-ASCII percent-encoded (UTF-8), the host in punycode.
    const location = new URL(valid.url!).href;
    res.writeHead(307, { location, 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', 'content-type': 'text/plain; charset=utf-8' }).end(`${location}\n`);
  }
}

export function startLinks(address: string, port: number, deps: LinksDeps): Promise<http.Server> {
  const server = http.createServer({ maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000, connectionsCheckingInterval: 1000 }, (req, res) => {
    serve(deps, req, res).catch((err: Error) => {
      deps.log.error({ err }, 'links endpoint: request failed');
      if (!res.headersSent && !res.destroyed) res.writeHead(500).end();
    });
  });
  // Behind an Ingress every request comes from its few addresses: a bound on all, none per client.
  server.maxConnections = MAX_CONNECTIONS;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

export const linksPortOf = (server: http.Server) => (server.address() as net.AddressInfo).port;
