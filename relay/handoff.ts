/**
 * Handoff: a relay that stops hands the mail it could not deliver in time to a peer relay of
 * the same fleet, so scaling down or rolling out loses nothing and strands nothing.
 *
 * One message per request: `POST /internal/handoff` with the fleet's bearer token, the
 * envelope (pending recipients, first-acceptance time, attempts, next attempt, the DKIM
 * signature already made) base64url-encoded in `x-mailfleet-envelope`, and the message bytes
 * as the body. The peer answers 200 only once the message is in its spool, fsynced, exactly as
 * intake does before a 250; only then does the sender remove its copy. A crash between the two
 * can deliver a message twice (at least once, as everywhere in the relay), never lose it.
 */
import crypto from 'node:crypto';
import dns from 'node:dns/promises';
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { Logger } from 'pino';
import type { RelayConfig } from './config.js';
import type { Envelope, Spool, SpoolEntry } from './spool.js';

export const HANDOFF_PATH = '/internal/handoff';
const HANDOFF_CONCURRENCY = 8;
const ENVELOPE_HEADER = 'x-mailfleet-envelope';

/** What travels with the message: what the peer needs to go on where this relay stopped. */
export type HandoffEnvelope = Pick<Envelope, 'sender' | 'recipients' | 'receivedAt' | 'listener' | 'client' | 'user' | 'messageId' | 'eightBit' | 'headerLength' | 'attempts' | 'nextAttemptAt' | 'delayNoticeSent' | 'dkimSignature'> & {
  /** The queue id at the relay that handed it over, for the logs of both. */
  originId: string;
};

export async function readToken(file: string | undefined): Promise<string | undefined> {
  if (!file) return undefined;
  const token = (await fsp.readFile(file, 'utf8').catch(() => '')).trim();
  return token || undefined;
}

const digest = (s: string) => crypto.createHash('sha256').update(s).digest();

export interface ReceiveDeps {
  tokenFile: () => string | undefined;
  /** False while this relay drains: a stopping relay takes nothing new. */
  accepting: () => boolean;
  spool: Spool;
  enqueue: (entry: SpoolEntry) => void;
  maxBytes: () => number;
  /** The earliest retry here (seconds): a handed-over message is tried no later than this from now. */
  minBackoff: () => number;
  log: Logger;
  /** Counts received handoffs. */
  received: () => void;
}

/** Serves one handoff request: 200 once the message is durable here, else 4xx/5xx and nothing kept. */
export async function receiveHandoff(req: http.IncomingMessage, deps: ReceiveDeps): Promise<{ code: number; body: string }> {
  const token = await readToken(deps.tokenFile());
  if (!token) return { code: 404, body: 'handoff is not configured here\n' };
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!m || !crypto.timingSafeEqual(digest(m[1]!), digest(token))) return { code: 401, body: 'unauthorized\n' };
  if (req.method !== 'POST') return { code: 405, body: `use POST ${HANDOFF_PATH}\n` };
  if (!deps.accepting()) return { code: 503, body: 'this relay is stopping: hand the message to another peer\n' };
  let envelope: HandoffEnvelope;
  try {
    envelope = JSON.parse(Buffer.from(String(req.headers[ENVELOPE_HEADER] ?? ''), 'base64url').toString('utf8')) as HandoffEnvelope;
    if (typeof envelope.sender !== 'string' || !Array.isArray(envelope.recipients) || !envelope.recipients.length) throw new Error('no recipients');
    if (!envelope.recipients.every((r) => typeof r?.address === 'string' && ['pending', 'delivered', 'failed'].includes(r.status))) throw new Error('bad recipient states');
  } catch (err) {
    return { code: 400, body: `bad envelope: ${(err as Error).message}\n` };
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > deps.maxBytes()) return { code: 413, body: 'message larger than this relay accepts\n' };
    chunks.push(chunk as Buffer);
  }
  const body = Buffer.concat(chunks);
  const { recipients, originId, id: _id, ...rest } = envelope as HandoffEnvelope & { id?: string };
  try {
    // Every recipient travels with its state: one that failed still gets its DSN from here.
    // The retry time holds, but no later than this relay's first backoff: the failure may have
    // been the old pod's own (its address, its connections). Attempts and the first acceptance
    // time go on, so backoff and lifetime do.
    const nextAttemptAt = Math.min(envelope.nextAttemptAt, Date.now() + deps.minBackoff() * 1000);
    const entry = await deps.spool.store({ ...rest, nextAttemptAt, recipients }, body);
    deps.enqueue(entry);
    deps.received();
    deps.log.info({ event: 'handoff_received', queueId: entry.envelope.id, originId, messageId: envelope.messageId, recipients: recipients.length, attempts: envelope.attempts }, 'message taken over from a peer');
    return { code: 200, body: `${entry.envelope.id}\n` };
  } catch (err) {
    deps.log.error({ err, originId }, 'could not store a handed-over message');
    return { code: 503, body: 'could not store the message here\n' };
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
    originId: env.id,
  };
}

/** The message's body could not be read here: no peer would do better. */
class LocalReadError extends Error {
  constructor(override readonly cause: Error) {
    super(`cannot read the message from the spool: ${cause.message}`);
  }
}

/** POSTs one message to one peer; resolves with the peer's answer (or throws on a network error). */
function post(peer: string, token: string, spool: Spool, entry: SpoolEntry, deadline: number): Promise<{ code: number; body: string }> {
  const [, host, port] = /^\[?([^\]]+?)\]?:(\d+)$/.exec(peer) ?? [];
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host,
        port: Number(port),
        method: 'POST',
        path: HANDOFF_PATH,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': entry.bodyLength, [ENVELOPE_HEADER]: Buffer.from(JSON.stringify(toHandoffEnvelope(entry.envelope))).toString('base64url') },
        timeout: Math.max(1000, deadline - Date.now()),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ code: res.statusCode ?? 0, body: text.trim() }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${peer} before the drain deadline`)));
    req.on('error', reject);
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
export async function handOffSpool(opts: { spool: Spool; peers: string[]; token: string; deadline: number; log: Logger; sent: () => void }): Promise<HandoffResult> {
  // Every message left, including one whose recipients all failed but whose DSN is not out yet.
  const { entries } = await opts.spool.recover();
  let handed = 0;
  let next = 0;
  let taken = 0;
  const refusedBy = new Set<string>();
  // A peer that cannot be reached, or is stopping, is not tried again for every message.
  const unreachable = new Set<string>();
  const handOne = async (entry: SpoolEntry): Promise<void> => {
    // Every peer once, from a rotating start (several messages go at once: each must still try them all).
    const start = next++;
    for (let i = 0; i < opts.peers.length && Date.now() < opts.deadline; i++) {
      const peer = opts.peers[(start + i) % opts.peers.length]!;
      if (unreachable.has(peer)) continue;
      try {
        const answer = await post(peer, opts.token, opts.spool, entry, opts.deadline);
        if (answer.code === 200) {
          await opts.spool.remove(entry);
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
