/**
 * A webhook receiver as an application would write one from docs/events.md, not from the
 * relay's code: it checks `Mailfleet-Signature` with its own HMAC (any key it knows, a
 * timestamp within five minutes), refuses a bad signature with 401, can fail the next requests
 * with 500 or answer late, and keeps every event by id, counting those it saw twice.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export interface ReceivedEvent {
  id: string;
  type: string;
  recipient: string;
  queueId: string;
  [field: string]: unknown;
}

export interface WebhookReceiver {
  url: string;
  port: number;
  /** Every event taken, first arrival only, in order. */
  readonly events: ReceivedEvent[];
  /** Events that came again (same id) after they had been taken. */
  readonly duplicates: number;
  /** Requests refused for their signature, with the reason. */
  readonly refused: string[];
  /** The key ids that verified each taken batch. */
  readonly verifiedBy: string[];
  readonly requests: number;
  /** Answer the next n requests with 500 (their events are not taken). */
  failNext(n: number): void;
  /** Take the next n requests' events, but answer only after ms (past the relay's timeout: it sends them again). */
  answerLate(n: number, ms: number): void;
  setKeys(keys: Record<string, string>): void;
  stop(): Promise<void>;
  /** Listens again on the same port. */
  restart(): Promise<void>;
}

export async function startWebhookReceiver(opts: { keys: Record<string, string>; port?: number; tls?: { key: string; cert: string } }): Promise<WebhookReceiver> {
  let keys = opts.keys;
  const events: ReceivedEvent[] = [];
  const seen = new Set<string>();
  const refused: string[] = [];
  const verifiedBy: string[] = [];
  let duplicates = 0;
  let requests = 0;
  let failing = 0;
  let late: { n: number; ms: number } = { n: 0, ms: 0 };

  const verify = (header: string | undefined, body: Buffer): string | { refused: string } => {
    if (!header) return { refused: 'no signature header' };
    const parts = new Map(header.split(';').map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));
    const t = Number(parts.get('t'));
    if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > 300) return { refused: `bad timestamp ${parts.get('t')}` };
    for (const [id, key] of Object.entries(keys)) {
      const given = parts.get(id);
      if (!given) continue;
      const expected = crypto.createHmac('sha256', key).update(Buffer.concat([Buffer.from(`${t}.`), body])).digest();
      const g = Buffer.from(given, 'hex');
      if (g.length === expected.length && crypto.timingSafeEqual(g, expected)) return id;
    }
    return { refused: `no known key verifies (${[...parts.keys()].join(',')})` };
  };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests++;
      const body = Buffer.concat(chunks);
      if (failing > 0) {
        failing--;
        res.writeHead(500).end('receiver failing on purpose\n');
        return;
      }
      const v = verify(req.headers['mailfleet-signature'] as string | undefined, body);
      if (typeof v !== 'string') {
        refused.push(v.refused);
        res.writeHead(401).end(`${v.refused}\n`);
        return;
      }
      verifiedBy.push(v);
      const batch = JSON.parse(body.toString('utf8')) as { version: number; events: ReceivedEvent[] };
      for (const e of batch.events) {
        if (seen.has(e.id)) duplicates++;
        else {
          seen.add(e.id);
          events.push(e);
        }
      }
      if (late.n > 0) {
        late.n--;
        setTimeout(() => res.writeHead(200).end('ok\n'), late.ms);
        return;
      }
      res.writeHead(200).end('ok\n');
    });
  };
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : http.createServer(handler);
  const listen = (port: number) => new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
  await listen(opts.port ?? 0);
  const port = (server.address() as AddressInfo).port;
  return {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}/mail-events`,
    port,
    events,
    get duplicates() {
      return duplicates;
    },
    refused,
    verifiedBy,
    get requests() {
      return requests;
    },
    failNext: (n) => (failing = n),
    answerLate: (n, ms) => (late = { n, ms }),
    setKeys: (k) => (keys = k),
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    restart: () => listen(port),
  };
}
