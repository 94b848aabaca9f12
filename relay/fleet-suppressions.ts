/**
 * One suppression list for a fleet. Each relay keeps its list in its own spool (an emptyDir
 * under Kubernetes), but a recipient who unsubscribed, complained or hard-bounced must be
 * left alone by every pod of the fleet, and by the pods that replace them. So:
 *
 * - each entry a relay lists itself is sent to its peers (POST /internal/suppressions, with
 *   the fleet's handoff token), in batches a moment apart, and the peers merge it;
 * - a relay that starts asks a peer for its whole list (GET /internal/suppressions) before it
 *   takes mail, and merges it.
 *
 * Best effort, like gossip: a peer down when an entry is sent gets it at its next start from
 * another peer. Without a handoff token (a single relay) nothing is shared.
 */
import http from 'node:http';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { RelayConfig } from './config.js';
import { findPeers, readToken } from './handoff.js';
import { bearerMatches, readJsonBody } from './peer-request.js';
import type { Suppression, SuppressionList } from './suppression.js';

export const SUPPRESSIONS_SYNC_PATH = '/internal/suppressions';
const MAX_BODY = 8 * 1024 * 1024;
const LINGER_MS = 500;
const REQUEST_TIMEOUT_MS = 5000;

const entrySchema = z.strictObject({
  senderDomain: z.string().min(1).max(255),
  recipient: z.string().min(1).max(1000),
  since: z.iso.datetime({ offset: true }),
  statusCode: z.string().max(16),
  reply: z.string().max(1000),
  permanent: z.boolean().optional(),
});
const listSchema = z.strictObject({ version: z.literal(1), entries: z.array(entrySchema).max(1_000_000) });
type WireEntry = z.infer<typeof entrySchema>;

const toWire = (s: Suppression): WireEntry => ({ senderDomain: s.senderDomain, recipient: s.recipient, since: new Date(s.since).toISOString(), statusCode: s.statusCode, reply: s.reply, ...(s.permanent ? { permanent: true } : {}) });
const fromWire = (e: WireEntry): Suppression => ({ senderDomain: e.senderDomain, recipient: e.recipient, since: Date.parse(e.since), statusCode: e.statusCode, reply: e.reply, ...(e.permanent ? { permanent: true } : {}) });

function call(peer: string, token: string, method: 'GET' | 'POST', body?: string): Promise<{ code: number; text: string }> {
  const [, host, port] = /^\[?([^\]]+?)\]?:(\d+)$/.exec(peer) ?? [];
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { authorization: `Bearer ${token}` };
    if (body !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    const req = http.request({ host, port: Number(port), method, path: SUPPRESSIONS_SYNC_PATH, headers, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY * 4) res.destroy(new Error(`${peer} sent more than ${MAX_BODY * 4} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => resolve({ code: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${peer} within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', reject);
    req.end(body);
  });
}

export interface FleetSuppressionsDeps {
  list: SuppressionList;
  handoff: () => RelayConfig['handoff'];
  log: Logger;
}

export class FleetSuppressions {
  private pending: Suppression[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();

  constructor(private readonly deps: FleetSuppressionsDeps) {}

  /** An entry this relay listed: to every peer, with the others listed within LINGER_MS. */
  share(s: Suppression): void {
    this.pending.push(s);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      const batch = this.pending;
      this.pending = [];
      this.sending = this.sending.then(() => this.send(batch));
    }, LINGER_MS);
  }

  private async send(batch: Suppression[]): Promise<void> {
    const handoff = this.deps.handoff();
    const token = await readToken(handoff.tokenFile);
    if (!token) return;
    const peers = await findPeers(handoff).catch(() => []);
    const body = JSON.stringify({ version: 1, entries: batch.map(toWire) });
    await Promise.all(
      peers.map(async (peer) => {
        try {
          const { code, text } = await call(peer, token, 'POST', body);
          if (code !== 200) this.deps.log.warn({ event: 'suppressions_share_refused', peer, code, answer: text.trim().slice(0, 200) }, 'a peer refused suppression list entries');
        } catch (err) {
          this.deps.log.warn({ event: 'suppressions_share_failed', peer, error: (err as Error).message }, 'a peer could not be reached with suppression list entries; it gets them when it starts again');
        }
      }),
    );
  }

  /** At start: merges the whole list of the first peer that gives it. Resolves with how many entries were new here. */
  async pull(): Promise<number> {
    const handoff = this.deps.handoff();
    const token = await readToken(handoff.tokenFile);
    if (!token) return 0;
    for (const peer of await findPeers(handoff).catch(() => [])) {
      try {
        const { code, text } = await call(peer, token, 'GET');
        if (code !== 200) continue;
        const parsed = listSchema.parse(JSON.parse(text));
        let taken = 0;
        for (const e of parsed.entries) if (this.deps.list.merge(fromWire(e))) taken++;
        this.deps.log.info({ event: 'suppressions_pulled', peer, entries: parsed.entries.length, new: taken }, `suppression list taken from ${peer}: ${taken} new entries`);
        return taken;
      } catch (err) {
        this.deps.log.warn({ event: 'suppressions_pull_failed', peer, error: (err as Error).message }, 'could not take the suppression list from a peer; trying another');
      }
    }
    return 0;
  }

  /** Waits for the entries listed so far to be sent. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      const batch = this.pending;
      this.pending = [];
      this.sending = this.sending.then(() => this.send(batch));
    }
    await this.sending;
  }

  /** GET: this relay's whole list; POST: a peer's new entries, merged. */
  async serve(req: http.IncomingMessage): Promise<{ code: number; body: string }> {
    const token = await readToken(this.deps.handoff().tokenFile);
    if (!token) return { code: 404, body: 'no fleet here: handoff.tokenFile is not set\n' };
    if (!bearerMatches(req, token)) return { code: 401, body: 'unauthorized\n' };
    if (req.method === 'GET') return { code: 200, body: JSON.stringify({ version: 1, entries: this.deps.list.list().map(toWire) }) };
    if (req.method !== 'POST') return { code: 405, body: `use GET or POST ${SUPPRESSIONS_SYNC_PATH}\n` };
    const read = await readJsonBody(req, listSchema, MAX_BODY, 'entries');
    if (!('data' in read)) return read;
    const parsed = read.data;
    let taken = 0;
    for (const e of parsed.entries) if (this.deps.list.merge(fromWire(e))) taken++;
    if (taken) this.deps.log.info({ event: 'suppressions_merged', entries: parsed.entries.length, new: taken }, `a peer shared ${taken} new suppression list entries`);
    return { code: 200, body: `${taken}\n` };
  }
}
