/**
 * Events a stopping relay's webhooks have not taken go to a peer with its mail (a scale-down
 * on an emptyDir spool would lose them with the pod): POST /internal/handoff/events, with the
 * fleet's handoff token, a JSON batch the peer puts in its own outbox before it answers 200.
 * The peer's webhooks send them; an event one of this relay's webhooks had taken may reach it
 * again, with the same id (at least once).
 */
import http from 'node:http';
import path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { EVENT_TYPES, type RelayEvent } from './event.js';
import { EVENTS_DIR, EventOutbox, type OutboxCursor } from './outbox.js';
import { bearerMatches, readJsonBody } from '../peer-request.js';

export const EVENTS_HANDOFF_PATH = '/internal/handoff/events';
/** One request's events: a few MiB at most. */
const BATCH = 1000;
export const MAX_EVENTS_BODY = 16 * 1024 * 1024;

/** What a peer checks of each event: what its webhooks and their receivers rely on; other fields pass as they are. */
const handedEventSchema = z.looseObject({
  id: z.string().regex(/^[0-9a-f]{32}$/),
  type: z.enum(EVENT_TYPES),
  time: z.iso.datetime({ offset: true }),
  relay: z.string().max(255),
  queueId: z.string().regex(/^[A-Za-z0-9]{1,64}$/),
  sender: z.string().max(1000),
  senderDomain: z.string().max(255).nullable(),
  recipient: z.string().max(1000),
  attempt: z.int().min(0),
});
const batchSchema = z.strictObject({ version: z.literal(1), events: z.array(handedEventSchema).max(BATCH) });

export interface ReceiveEventsDeps {
  token: () => Promise<string | undefined>;
  accepting: () => boolean;
  /** Into this relay's outbox; resolves with how many were taken. */
  publish: (events: RelayEvent[]) => Promise<number>;
  log: Logger;
}


export async function receiveEvents(req: http.IncomingMessage, deps: ReceiveEventsDeps): Promise<{ code: number; body: string }> {
  const token = await deps.token();
  if (!token) return { code: 404, body: 'handoff is not configured here\n' };
  if (!bearerMatches(req, token)) return { code: 401, body: 'unauthorized\n' };
  if (req.method !== 'POST') return { code: 405, body: `use POST ${EVENTS_HANDOFF_PATH}\n` };
  if (!deps.accepting()) return { code: 503, body: 'this relay is stopping: hand the events to another peer\n' };
  const read = await readJsonBody(req, batchSchema, MAX_EVENTS_BODY, 'events');
  if (!('data' in read)) return read;
  const parsed = read.data;
  const taken = await deps.publish(parsed.events as RelayEvent[]);
  deps.log.info({ event: 'events_handoff_received', events: parsed.events.length, taken }, taken ? 'events taken over from a peer' : 'a peer handed over events, but no webhook is configured here: they are dropped');
  return { code: 200, body: `${taken}\n` };
}

function post(peer: string, token: string, body: string, deadline: number): Promise<number> {
  const [, host, port] = /^\[?([^\]]+?)\]?:(\d+)$/.exec(peer) ?? [];
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port: Number(port), method: 'POST', path: EVENTS_HANDOFF_PATH, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: Math.max(1000, deadline - Date.now()) },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${peer} before the drain deadline`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * After the mail (relay/handoff.ts), the events no webhook here has taken: every webhook's
 * pending events, once each, to the first peer that takes them; each webhook's place moves on
 * only when all of its events went. Resolves with how many were handed and left.
 */
export async function handOffEvents(opts: { spoolDir: string; webhooks: string[]; peers: string[]; token: string; deadline: number; log: Logger }): Promise<{ handed: number; left: number }> {
  const outbox = EventOutbox.open(path.join(opts.spoolDir, EVENTS_DIR), opts.webhooks, { maxBytes: Number.MAX_SAFE_INTEGER });
  try {
    const pending = new Map<string, RelayEvent>();
    const ends = new Map<string, OutboxCursor>();
    for (const name of opts.webhooks) {
      for (let b = await outbox.read(name, BATCH); b; b = await outbox.read(name, BATCH, undefined, b.end)) {
        for (const e of b.events) pending.set(e.id, e);
        ends.set(name, b.end);
      }
    }
    const events = [...pending.values()];
    let handed = 0;
    for (let i = 0; i < events.length && Date.now() < opts.deadline; i += BATCH) {
      const body = JSON.stringify({ version: 1, events: events.slice(i, i + BATCH) });
      let taken = false;
      for (const peer of opts.peers) {
        try {
          const code = await post(peer, opts.token, body, opts.deadline);
          if (code === 200) {
            taken = true;
            break;
          }
          opts.log.warn({ event: 'events_handoff_refused', peer, code }, 'a peer refused the events; trying another');
        } catch (err) {
          opts.log.warn({ event: 'events_handoff_failed', peer, error: (err as Error).message }, 'a peer could not be reached for the events; trying another');
        }
      }
      if (!taken) break;
      handed += Math.min(BATCH, events.length - i);
    }
    // All went: no webhook here owes anything (a PersistentVolume's next start sends nothing again).
    if (handed === events.length) for (const [name, end] of ends) outbox.ack(name, end);
    return { handed, left: events.length - handed };
  } finally {
    outbox.close();
  }
}
