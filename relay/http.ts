/**
 * The relay's HTTP endpoint: /metrics for Prometheus, /healthz (alive) and /readyz (take
 * traffic), and, with a bearer token configured, /admin (the suppression list) and
 * /internal/handoff (relay/handoff.ts), /internal/handoff/events (relay/events/handoff.ts) and
 * /internal/suppressions (relay/fleet-suppressions.ts).
 *
 * Anyone who can reach the port can open connections and send headers before any token is
 * checked, so what one request and all of them may hold is bounded: 64 KiB of headers (the
 * handoff envelope travels in the body; see MAX_HEADER_BYTES), headers within 10 s and a whole request
 * within 2 minutes, at most MAX_CONNECTIONS connections and MAX_CONNECTIONS_PER_CLIENT from
 * one address (Prometheus, the kubelet's probes and peers each come from their own), and no
 * request body except an authenticated handoff's, whose size relay/handoff.ts (and
 * relay/events/handoff.ts) bounds.
 */
import fsp from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import { EVENTS_HANDOFF_PATH } from './events/handoff.js';
import { SUPPRESSIONS_SYNC_PATH } from './fleet-suppressions.js';
import { HANDOFF_PATH, HANDOFF_VERSION_HEADER } from './handoff.js';
import { bearerMatches } from './peer-request.js';

/**
 * A request with more header bytes gets 431 before any of our code runs. Node's default is
 * 16 KiB; 64 KiB lets a relay of the version before 2 hand over a message of 100 recipients
 * (limits.maxRecipients' default) that was deferred once, its envelope in a header, during the
 * rolling update to this version (the spool is an emptyDir: what no peer takes is lost).
 * MAX_CONNECTIONS of them hold 16 MiB. Back to 16 KiB when the header form goes.
 */
export const MAX_HEADER_BYTES = 64 * 1024;
export const MAX_CONNECTIONS = 256;
export const MAX_CONNECTIONS_PER_CLIENT = 32;
const HEADERS_TIMEOUT_MS = 10_000;
/** A whole request, a handoff's message included (a peer is in the same cluster). */
const REQUEST_TIMEOUT_MS = 120_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;

export interface Probe {
  ok: boolean;
  reason?: string;
}

export interface AdminApi {
  /** The file holding the bearer token; undefined turns /admin off. Read on each request, so a rotated Secret applies at once. */
  tokenFile: () => string | undefined;
  suppressions: (senderDomain?: string) => unknown[];
  /** Resolves with what was removed (nothing: the address was not on the list). */
  removeSuppression: (senderDomain: string, address: string) => Promise<unknown[]>;
}

type Reply = (code: number, body: string, type?: string, headers?: Record<string, string>) => void;

const json = (reply: Reply, code: number, value: unknown) => reply(code, JSON.stringify(value, null, 2) + '\n', 'application/json');


async function admin(api: AdminApi, tokenFile: string, req: http.IncomingMessage, pathname: string, query: URLSearchParams, reply: Reply): Promise<void> {
  let token: string;
  try {
    token = (await fsp.readFile(tokenFile, 'utf8')).trim();
  } catch {
    // The caller is not authenticated yet: no file names or errors in the reply.
    return reply(503, 'admin endpoint unavailable: the token file cannot be read\n');
  }
  // An empty token would let "Bearer " through; refuse instead.
  if (!token) return reply(503, 'admin endpoint unavailable: the token file is empty\n');
  if (!bearerMatches(req, token)) return reply(401, 'unauthorized: send Authorization: Bearer <token>\n', undefined, { 'www-authenticate': 'Bearer realm="mailfleet"' });

  let parts: string[];
  try {
    parts = pathname.split('/').slice(2).map(decodeURIComponent);
  } catch {
    return reply(400, 'bad request: malformed percent-encoding in the path\n');
  }
  if (parts[0] !== 'suppressions') return reply(404, 'not found: try /admin/suppressions\n');
  if (req.method === 'GET' && parts.length === 1) return json(reply, 200, { suppressions: api.suppressions(query.get('domain') ?? undefined) });
  if (req.method === 'DELETE' && parts.length === 3 && parts[1] && parts[2]) {
    const [, domain, address] = parts as [string, string, string];
    const removed = await api.removeSuppression(domain, address);
    return removed.length ? json(reply, 200, { removed }) : json(reply, 404, { error: `${address} is not on the suppression list for ${domain}` });
  }
  reply(405, 'use GET /admin/suppressions or DELETE /admin/suppressions/<sender-domain>/<address>\n', undefined, { allow: 'GET, DELETE' });
}

export interface HttpOptions {
  address: string;
  port: number;
  metrics: () => Promise<{ text: string; contentType: string }>;
  ready: () => Promise<Probe>;
  healthy: () => Probe;
  admin?: AdminApi;
  /** Takes a message from a peer relay (relay/handoff.ts). */
  handoff?: (req: http.IncomingMessage) => Promise<{ code: number; body: string }>;
  /** Takes a stopping peer's events (relay/events/handoff.ts). */
  handoffEvents?: (req: http.IncomingMessage) => Promise<{ code: number; body: string }>;
  /** The fleet's suppression list: a peer's new entries, or this relay's whole list (relay/fleet-suppressions.ts). */
  suppressions?: (req: http.IncomingMessage) => Promise<{ code: number; body: string }>;
}

function serve(opts: HttpOptions, req: http.IncomingMessage, res: http.ServerResponse): void {
  const reply: Reply = (code, body, type = 'text/plain; charset=utf-8', headers = {}) => {
    // A body left unread (a refused handoff) is not read to its end: the connection closes.
    res.writeHead(code, { 'content-type': type, ...(req.complete ? {} : { connection: 'close' }), ...headers });
    res.end(body);
  };
  const [pathname = '/', query] = (req.url ?? '/').split('?');
  const tokenFile = opts.admin?.tokenFile();
  const handoff = pathname === HANDOFF_PATH ? opts.handoff : pathname === EVENTS_HANDOFF_PATH ? opts.handoffEvents : pathname === SUPPRESSIONS_SYNC_PATH ? opts.suppressions : undefined;
  if (!handoff && (req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0)) {
    reply(413, 'this endpoint takes no request body\n');
  } else if (pathname === '/metrics') {
    opts.metrics().then((m) => reply(200, m.text, m.contentType), (err: Error) => reply(500, err.message));
  } else if (pathname === '/healthz') {
    const p = opts.healthy();
    reply(p.ok ? 200 : 503, p.ok ? 'ok\n' : `not healthy: ${p.reason}\n`);
  } else if (pathname === '/readyz') {
    opts.ready().then((p) => reply(p.ok ? 200 : 503, p.ok ? 'ready\n' : `not ready: ${p.reason}\n`), (err: Error) => reply(503, `not ready: ${err.message}\n`));
  } else if (handoff) {
    const version = { [HANDOFF_VERSION_HEADER]: '2' };
    handoff(req).then(
      (r) => reply(r.code, r.body, undefined, version),
      // The peer may have gone (its request aborted): answer only a socket still there.
      (err: Error) => {
        if (!res.headersSent && !res.destroyed) reply(500, `${err.message}\n`, undefined, version);
      },
    );
  } else if (opts.admin && tokenFile && (pathname === '/admin' || pathname.startsWith('/admin/'))) {
    admin(opts.admin, tokenFile, req, pathname, new URLSearchParams(query), reply).catch((err: Error) => reply(500, `${err.message}\n`));
  } else {
    reply(404, 'not found: try /metrics, /healthz or /readyz\n');
  }
}

export function startHttp(opts: HttpOptions): Promise<http.Server> {
  const server = http.createServer(
    {
      maxHeaderSize: MAX_HEADER_BYTES,
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      // Node checks the two timeouts above this often (its default, 30 s, would let them run over).
      connectionsCheckingInterval: 1000,
    },
    (req, res) => serve(opts, req, res),
  );
  server.maxConnections = MAX_CONNECTIONS;
  const perClient = new Map<string, number>();
  server.on('connection', (socket: net.Socket) => {
    const client = socket.remoteAddress ?? '';
    const n = (perClient.get(client) ?? 0) + 1;
    if (n > MAX_CONNECTIONS_PER_CLIENT) {
      socket.destroy();
      return;
    }
    perClient.set(client, n);
    socket.once('close', () => {
      const left = (perClient.get(client) ?? 1) - 1;
      if (left > 0) perClient.set(client, left);
      else perClient.delete(client);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.address, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

export function portOf(server: http.Server): number {
  return (server.address() as net.AddressInfo).port;
}
