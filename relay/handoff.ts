/**
 * Handoff: a relay that stops hands the mail it could not deliver in time to a peer relay of
 * the same fleet, so scaling down or rolling out loses nothing and strands nothing.
 *
 * One message per request, `POST /internal/handoff`:
 *
 *     Authorization: Bearer <the fleet's token>
 *     Content-Type: application/vnd.mailfleet.handoff.v2
 *     Content-Length: 4 + n + message length
 *
 *     <n: uint32, big-endian> <n bytes: the envelope, JSON in UTF-8> <the message bytes>
 *
 * The envelope (relay/envelope.ts: pending recipients, first-acceptance time, attempts, next
 * attempt, the DKIM signature already made) travels in the body, so the HTTP server keeps
 * Node's small header limit for everyone. The receiver checks the token before it reads a
 * byte of the body, then reads the envelope (at most MAX_ENVELOPE_BYTES) and checks all of it
 * before it reads the message. It answers 200 only once the message is in its spool, fsynced,
 * exactly as intake does before a 250; only then does the sender remove its copy. A crash
 * between the two can deliver a message twice (at least once, as everywhere in the relay),
 * never lose it. Every answer of a receiver of this version carries `x-mailfleet-handoff: 2`.
 *
 * Rolling updates mix versions. Relays before version 2 send the envelope base64url-encoded
 * in an `x-mailfleet-envelope` header and the message as the body: a receiver still takes that
 * from an authenticated peer when the request's headers fit the server's limit (64 KiB, see
 * relay/http.ts: about 600 recipients not tried yet, 170 with a 100-character reply each); a larger
 * one is refused by Node with 431 before any of our code runs, and the old sender tries its
 * other peers (old ones still running take it), keeping the message when none does.
 * A version-2 sender that meets a peer answering 400 without `x-mailfleet-handoff` (an old
 * receiver, which finds no envelope header) sends that peer the header form instead.
 */
import dns from 'node:dns/promises';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { Logger } from 'pino';
import type { RelayConfig } from './config.js';
import { parseHandoffEnvelope, type HandoffEnvelope } from './envelope.js';
import { Spool, type Envelope, type IntakeSpool, type SpoolEntry } from './spool/spool.js';
import { bearerMatches } from './peer-request.js';

export type { HandoffEnvelope } from './envelope.js';

export const HANDOFF_PATH = '/internal/handoff';
export const HANDOFF_CONTENT_TYPE = 'application/vnd.mailfleet.handoff.v2';
/** On every answer of a receiver that reads the envelope from the body. */
export const HANDOFF_VERSION_HEADER = 'x-mailfleet-handoff';
/** Where relays before version 2 put the envelope (base64url JSON). */
const LEGACY_ENVELOPE_HEADER = 'x-mailfleet-envelope';
/** An envelope of MAX_RECIPIENTS recipients with replies of a few hundred bytes fits. */
export const MAX_ENVELOPE_BYTES = 8 * 1024 * 1024;
const HANDOFF_CONCURRENCY = 8;

export async function readToken(file: string | undefined): Promise<string | undefined> {
  if (!file) return undefined;
  const token = (await fsp.readFile(file, 'utf8').catch(() => '')).trim();
  return token || undefined;
}


export interface ReceiveDeps {
  tokenFile: () => string | undefined;
  /** False while this relay drains: a stopping relay takes nothing new. */
  accepting: () => boolean;
  spool: IntakeSpool;
  enqueue: (entry: SpoolEntry) => void;
  maxBytes: () => number;
  /** The earliest retry here (seconds): a handed-over message is tried no later than this from now. */
  minBackoff: () => number;
  log: Logger;
  /** Counts received handoffs. */
  received: () => void;
}

export interface HandoffAnswer {
  code: number;
  body: string;
}

/** Reads a request body piece by piece: exactly n bytes, then the rest. */
class BodyReader {
  private readonly chunks: AsyncIterator<Buffer>;
  private buffered: Buffer = Buffer.alloc(0);
  constructor(req: http.IncomingMessage) {
    this.chunks = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }
  /** Exactly n bytes, or fewer when the body ends first. */
  async take(n: number): Promise<Buffer> {
    const parts = [this.buffered];
    let have = this.buffered.length;
    while (have < n) {
      const next = await this.chunks.next();
      if (next.done) break;
      parts.push(next.value);
      have += next.value.length;
    }
    const all = Buffer.concat(parts);
    this.buffered = all.subarray(Math.min(n, all.length));
    return all.subarray(0, Math.min(n, all.length));
  }
}

const refuse = (code: number, body: string): HandoffAnswer => ({ code, body: body + '\n' });

/**
 * Serves one handoff request: 200 once the message is durable here, else 4xx/5xx and nothing
 * kept. Nothing of the body is read before the token matched and the sizes are known to fit.
 */
export async function receiveHandoff(req: http.IncomingMessage, deps: ReceiveDeps): Promise<HandoffAnswer> {
  const token = await readToken(deps.tokenFile());
  if (!token) return refuse(404, 'handoff is not configured here');
  if (!bearerMatches(req, token)) return refuse(401, 'unauthorized');
  if (req.method !== 'POST') return refuse(405, `use POST ${HANDOFF_PATH}`);
  if (!deps.accepting()) return refuse(503, 'this relay is stopping: hand the message to another peer');
  const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
  if (declared === undefined || !Number.isSafeInteger(declared)) return refuse(411, 'a handoff needs a Content-Length');
  const reader = new BodyReader(req);
  let raw: Buffer;
  let bodyLength: number;
  const legacy = req.headers[LEGACY_ENVELOPE_HEADER];
  if (req.headers['content-type'] === HANDOFF_CONTENT_TYPE) {
    if (declared < 4) return refuse(400, 'bad envelope: the body is shorter than its length prefix');
    const length = (await reader.take(4)).readUInt32BE(0);
    if (length > MAX_ENVELOPE_BYTES) return refuse(413, `envelope of ${length} bytes, more than the ${MAX_ENVELOPE_BYTES} taken here`);
    if (length > declared - 4) return refuse(400, 'bad envelope: its length runs past the body');
    raw = await reader.take(length);
    if (raw.length < length) return refuse(400, 'bad envelope: the body ended inside it');
    bodyLength = declared - 4 - length;
  } else if (typeof legacy === 'string') {
    // A peer of a version before 2, during a rolling update (see the module comment).
    raw = Buffer.from(legacy, 'base64url');
    bodyLength = declared;
  } else {
    return refuse(415, `send the envelope and the message as ${HANDOFF_CONTENT_TYPE}`);
  }
  if (bodyLength > deps.maxBytes()) return refuse(413, 'message larger than this relay accepts');
  let envelope: HandoffEnvelope;
  try {
    const r = parseHandoffEnvelope(JSON.parse(raw.toString('utf8')), bodyLength);
    if (!r.ok) return refuse(400, `bad envelope: ${r.error}`);
    envelope = r.envelope;
  } catch (err) {
    return refuse(400, `bad envelope: not JSON: ${(err as Error).message}`);
  }
  const body = await reader.take(bodyLength + 1);
  if (body.length !== bodyLength) return refuse(400, `the message has ${body.length > bodyLength ? 'more' : 'fewer'} bytes than Content-Length says`);
  const { recipients, originId, ...rest } = envelope;
  try {
    // Every recipient travels with its state: one that failed still gets its DSN from here.
    // The retry time holds, but no later than this relay's first backoff: the failure may have
    // been the old pod's own (its address, its connections). Attempts and the first acceptance
    // time go on, so backoff and lifetime do.
    const nextAttemptAt = Math.min(envelope.nextAttemptAt, Date.now() + deps.minBackoff() * 1000);
    const entry = await deps.spool.store({ ...rest, nextAttemptAt, recipients, handedOverFrom: originId }, body);
    deps.enqueue(entry);
    deps.received();
    deps.log.info({ event: 'handoff_received', queueId: entry.envelope.id, originId, messageId: envelope.messageId, recipients: recipients.length, attempts: envelope.attempts }, 'message taken over from a peer');
    return { code: 200, body: `${entry.envelope.id}\n` };
  } catch (err) {
    deps.log.error({ err, originId }, 'could not store a handed-over message');
    return refuse(503, 'could not store the message here');
  }
}

/** The peers to hand mail to: the static list, and the addresses of the fleet's Service (but this pod). */
export async function findPeers(config: RelayConfig['handoff'], ownAddress = process.env.POD_IP): Promise<string[]> {
  const peers = [...config.peers];
  if (config.peerService) {
    const [v4, v6] = await Promise.allSettled([dns.resolve4(config.peerService), dns.resolve6(config.peerService)]);
    const addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    for (const a of addresses) if (a !== ownAddress) peers.push(a.includes(':') ? `[${a}]:${config.peerPort}` : `${a}:${config.peerPort}`);
  }
  return peers;
}

function toHandoffEnvelope(env: Envelope): HandoffEnvelope {
  return {
    sender: env.sender,
    recipients: env.recipients,
    receivedAt: env.receivedAt,
    listener: env.listener,
    client: env.client,
    user: env.user,
    messageId: env.messageId,
    eightBit: env.eightBit,
    headerLength: env.headerLength,
    attempts: env.attempts,
    nextAttemptAt: env.nextAttemptAt,
    delayNoticeSent: env.delayNoticeSent,
    dkimSignature: env.dkimSignature,
    tags: env.tags,
    metadata: env.metadata,
    originId: env.id,
  };
}

/** The message's body could not be read here: no peer would do better. */
class LocalReadError extends Error {
  constructor(override readonly cause: Error) {
    super(`cannot read the message from the spool: ${cause.message}`);
  }
}

interface PeerAnswer extends HandoffAnswer {
  /** The peer reads the envelope from the body (version 2 or later). */
  current: boolean;
}

/**
 * POSTs one message to one peer, the envelope in the body (or, for a peer of an older
 * version, in a header); resolves with the peer's answer (or throws on a network error).
 */
function post(peer: string, token: string, spool: Spool, entry: SpoolEntry, deadline: number, form: 'body' | 'legacy-header'): Promise<PeerAnswer> {
  const [, host, port] = /^\[?([^\]]+?)\]?:(\d+)$/.exec(peer) ?? [];
  const envelope = Buffer.from(JSON.stringify(toHandoffEnvelope(entry.envelope)));
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(envelope.length);
  const headers =
    form === 'body'
      ? { 'content-type': HANDOFF_CONTENT_TYPE, 'content-length': 4 + envelope.length + entry.bodyLength }
      : { 'content-type': 'application/octet-stream', 'content-length': entry.bodyLength, [LEGACY_ENVELOPE_HEADER]: envelope.toString('base64url') };
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host,
        port: Number(port),
        method: 'POST',
        path: HANDOFF_PATH,
        headers: { authorization: `Bearer ${token}`, ...headers },
        timeout: Math.max(1000, deadline - Date.now()),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ code: res.statusCode ?? 0, body: text.trim(), current: res.headers[HANDOFF_VERSION_HEADER] !== undefined }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${peer} before the drain deadline`)));
    req.on('error', reject);
    if (form === 'body') req.write(Buffer.concat([prefix, envelope]));
    const body = spool.openBody(entry);
    // Our own read failed, not the peer: say so, so the peer is not given up on.
    body.on('error', (err) => req.destroy(new LocalReadError(err)));
    body.pipe(req);
  });
}

export interface HandoffResult {
  handed: number;
  left: number;
}

/**
 * Hands every message in the spool (the queue has stopped) to peers until the deadline. A
 * message goes to the next peer when one refuses or cannot be reached; it stays here when no
 * peer takes it (lost with the pod if the spool is an emptyDir: a PersistentVolume keeps it
 * for the pod's successor).
 */
export async function handOffSpool(opts: { dir: string; peers: string[]; token: string; deadline: number; log: Logger; sent: () => void }): Promise<HandoffResult> {
  // The queue has stopped and the writer is closed: this spool object takes both sides over
  // what is left (the handed-over messages' done marks reach the disk at its close).
  const spool = new Spool(opts.dir);
  try {
    return await handOver(spool, opts);
  } finally {
    await spool.close();
  }
}

async function handOver(spool: Spool, opts: { peers: string[]; token: string; deadline: number; log: Logger; sent: () => void }): Promise<HandoffResult> {
  // Every message left, including one whose recipients all failed but whose DSN is not out yet.
  const { entries } = await spool.recover();
  let handed = 0;
  let next = 0;
  let taken = 0;
  const refusedBy = new Set<string>();
  // A peer that cannot be reached, or is stopping, is not tried again for every message.
  const unreachable = new Set<string>();
  const legacyPeers = new Set<string>();
  const handOne = async (entry: SpoolEntry): Promise<void> => {
    // Every peer once, from a rotating start (several messages go at once: each must still try them all).
    const start = next++;
    for (let i = 0; i < opts.peers.length && Date.now() < opts.deadline; i++) {
      const peer = opts.peers[(start + i) % opts.peers.length]!;
      if (unreachable.has(peer)) continue;
      try {
        const form = legacyPeers.has(peer) ? 'legacy-header' : 'body';
        let answer = await post(peer, opts.token, spool, entry, opts.deadline, form);
        // A receiver of a version before 2 finds no envelope header and says 400, without the
        // version header: it gets the header form from now on (see the module comment).
        if (form === 'body' && answer.code === 400 && !answer.current) {
          if (!legacyPeers.has(peer)) opts.log.info({ event: 'handoff_legacy_peer', peer }, 'a peer of an older version: sending it the envelope in a header');
          legacyPeers.add(peer);
          answer = await post(peer, opts.token, spool, entry, opts.deadline, 'legacy-header');
        }
        if (answer.code === 200) {
          await spool.remove(entry);
          opts.sent();
          handed++;
          opts.log.info({ event: 'handoff_sent', queueId: entry.envelope.id, peer, peerQueueId: answer.body, messageId: entry.envelope.messageId }, 'message handed to a peer');
          return;
        }
        // A peer that is stopping itself takes nothing more: do not ask it again.
        if (answer.code === 503) unreachable.add(peer);
        if (!refusedBy.has(`${peer} ${answer.code}`)) {
          refusedBy.add(`${peer} ${answer.code}`);
          opts.log.warn({ event: 'handoff_refused', peer, code: answer.code, reply: answer.body }, 'a peer refused a handoff; trying another');
        }
      } catch (err) {
        if (err instanceof LocalReadError) {
          opts.log.error({ event: 'handoff_unreadable', queueId: entry.envelope.id, error: err.message }, 'a message could not be read for the handoff; it stays in the spool');
          return;
        }
        unreachable.add(peer);
        opts.log.warn({ event: 'handoff_failed', peer, error: (err as Error).message }, 'a peer could not be reached; trying another');
      }
    }
  };
  // Several at once: each peer fsyncs before it answers, and its fsyncs coalesce across requests.
  await Promise.all(
    Array.from({ length: Math.min(HANDOFF_CONCURRENCY, entries.length) }, async () => {
      while (taken < entries.length && Date.now() < opts.deadline) await handOne(entries[taken++]!);
    }),
  );
  return { handed, left: entries.length - handed };
}
