/**
 * One suppression list for a fleet. Each relay keeps its list in its own spool (an emptyDir
 * under Kubernetes), but a recipient who unsubscribed, complained or hard-bounced must be
 * left alone by every pod of the fleet, and by the pods that replace them. So:
 *
 * - each entry a relay lists itself is sent to its peers (POST /internal/suppressions, with
 *   the fleet's handoff token), in batches a moment apart, and the peers merge it;
 * - so is each removal (the admin endpoint's, `mailfleet suppressions remove`'s): the peers
 *   drop the entries listed before it, and keep it for suppression.ttl so that an entry a
 *   peer still holds is not taken back;
 * - a relay that starts asks a peer for its whole list and removals (GET
 *   /internal/suppressions) before it takes mail, and merges them.
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
import type { Removal, Suppression, SuppressionList } from './suppression.js';

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
const removalSchema = z.strictObject({
  senderDomain: z.string().min(1).max(255).optional(),
  recipient: z.string().min(1).max(1000),
  at: z.iso.datetime({ offset: true }),
});
// `removals` is optional: relays before it sent entries only (and refuse a body that has it).
// Each item is checked on its own: one a peer should not have listed is skipped, not the rest with it.
const listSchema = z.strictObject({ version: z.literal(1), entries: z.array(z.unknown()).max(1_000_000), removals: z.array(z.unknown()).max(1_000_000).optional() });
type WireEntry = z.infer<typeof entrySchema>;
type WireRemoval = z.infer<typeof removalSchema>;

const toWire = (s: Suppression): WireEntry => ({ senderDomain: s.senderDomain, recipient: s.recipient, since: new Date(s.since).toISOString(), statusCode: s.statusCode, reply: s.reply, ...(s.permanent ? { permanent: true } : {}) });
const fromWire = (e: WireEntry): Suppression => ({ senderDomain: e.senderDomain, recipient: e.recipient, since: Date.parse(e.since), statusCode: e.statusCode, reply: e.reply, ...(e.permanent ? { permanent: true } : {}) });
const removalToWire = (r: Removal): WireRemoval => ({ ...(r.senderDomain !== undefined && { senderDomain: r.senderDomain }), recipient: r.recipient, at: new Date(r.at).toISOString() });
const removalFromWire = (r: WireRemoval): Removal => ({ ...(r.senderDomain !== undefined && { senderDomain: r.senderDomain }), recipient: r.recipient, at: Date.parse(r.at) });

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

interface Batch {
  entries: Suppression[];
  removals: Removal[];
}

/** What is on its way to one peer: at most one request at a time, and what came meanwhile in one batch after it. */
interface PeerOutbox {
  pending: Batch | undefined;
  running: Promise<void> | undefined;
}

export class FleetSuppressions {
  private pending: Batch = { entries: [], removals: [] };
  private timer: NodeJS.Timeout | undefined;
  /** Batches being handed to the peers' outboxes (reading the token and finding the peers), in order. */
  private distributing: Promise<void> = Promise.resolve();
  /**
   * One outbox per peer: a peer that hangs (up to REQUEST_TIMEOUT_MS a request) delays only
   * itself, and what is listed meanwhile waits for it in one batch, not one per LINGER_MS.
   */
  private readonly outboxes = new Map<string, PeerOutbox>();

  constructor(private readonly deps: FleetSuppressionsDeps) {}

  /** An entry this relay listed: to every peer, with the others listed within LINGER_MS. */
  share(s: Suppression): void {
    this.pending.entries.push(s);
    this.soon();
  }

  /** A removal made here: to every peer, with the entries and removals of the next LINGER_MS. */
  shareRemoval(r: Removal): void {
    this.pending.removals.push(r);
    this.soon();
  }

  private soon(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.sendPending();
    }, LINGER_MS);
  }

  private sendPending(): void {
    const batch = this.pending;
    this.pending = { entries: [], removals: [] };
    this.distributing = this.distributing.then(() => this.distribute(batch));
  }

  private async distribute(batch: Batch): Promise<void> {
    const handoff = this.deps.handoff();
    const token = await readToken(handoff.tokenFile);
    if (!token) return;
    for (const peer of await findPeers(handoff).catch(() => [])) {
      const box = this.outboxes.get(peer) ?? { pending: undefined, running: undefined };
      this.outboxes.set(peer, box);
      box.pending = box.pending ? { entries: [...box.pending.entries, ...batch.entries], removals: [...box.pending.removals, ...batch.removals] } : batch;
      box.running ??= this.run(peer, box, token);
    }
  }

  private async run(peer: string, box: PeerOutbox, token: string): Promise<void> {
    while (box.pending) {
      const batch = box.pending;
      box.pending = undefined;
      await this.post(peer, token, batch);
    }
    box.running = undefined;
    this.outboxes.delete(peer);
  }

  private async post(peer: string, token: string, batch: Batch): Promise<void> {
    // Entries alone stay readable by relays of the version before removals were shared.
    const body = JSON.stringify({ version: 1, entries: batch.entries.map(toWire), ...(batch.removals.length && { removals: batch.removals.map(removalToWire) }) });
    try {
      const { code, text } = await call(peer, token, 'POST', body);
      if (code !== 200) this.deps.log.warn({ event: 'suppressions_share_refused', peer, code, answer: text.trim().slice(0, 200) }, 'a peer refused suppression list entries');
    } catch (err) {
      this.deps.log.warn({ event: 'suppressions_share_failed', peer, error: (err as Error).message }, 'a peer could not be reached with suppression list entries; it gets them when it starts again');
    }
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
        const { taken, removed, skipped } = this.mergeAll(parsed);
        this.deps.log.info({ event: 'suppressions_pulled', peer, entries: parsed.entries.length, new: taken, removals: removed, skipped: skipped || undefined }, `suppression list taken from ${peer}: ${taken} new entries, ${removed} new removals${skipped ? `, ${skipped} malformed items skipped` : ''}`);
        return taken;
      } catch (err) {
        this.deps.log.warn({ event: 'suppressions_pull_failed', peer, error: (err as Error).message }, 'could not take the suppression list from a peer; trying another');
      }
    }
    return 0;
  }

  /** Removals first: an entry they cover is then not taken. An item that is not well formed is skipped and counted. */
  private mergeAll(parsed: z.infer<typeof listSchema>): { taken: number; removed: number; skipped: number } {
    let removed = 0;
    let skipped = 0;
    for (const item of parsed.removals ?? []) {
      const r = removalSchema.safeParse(item);
      if (!r.success) skipped++;
      else if (this.deps.list.mergeRemoval(removalFromWire(r.data))) removed++;
    }
    let taken = 0;
    for (const item of parsed.entries) {
      const e = entrySchema.safeParse(item);
      if (!e.success) skipped++;
      else if (this.deps.list.merge(fromWire(e.data))) taken++;
    }
    return { taken, removed, skipped };
  }

  /** Waits for the entries and removals so far to be sent (each peer's request ends within REQUEST_TIMEOUT_MS). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.sendPending();
    }
    await this.distributing;
    await Promise.all([...this.outboxes.values()].map((box) => box.running));
  }

  /** GET: this relay's whole list; POST: a peer's new entries, merged. */
  async serve(req: http.IncomingMessage): Promise<{ code: number; body: string }> {
    const token = await readToken(this.deps.handoff().tokenFile);
    if (!token) return { code: 404, body: 'no fleet here: handoff.tokenFile is not set\n' };
    if (!bearerMatches(req, token)) return { code: 401, body: 'unauthorized\n' };
    if (req.method === 'GET') return { code: 200, body: JSON.stringify({ version: 1, entries: this.deps.list.list().map(toWire), removals: this.deps.list.listRemovals().map(removalToWire) }) };
    if (req.method !== 'POST') return { code: 405, body: `use GET or POST ${SUPPRESSIONS_SYNC_PATH}\n` };
    const read = await readJsonBody(req, listSchema, MAX_BODY, 'entries');
    if (!('data' in read)) return read;
    const { taken, removed, skipped } = this.mergeAll(read.data);
    if (taken || removed || skipped) this.deps.log.info({ event: 'suppressions_merged', entries: read.data.entries.length, new: taken, removals: removed, skipped: skipped || undefined }, `a peer shared ${taken} new suppression list entries and ${removed} new removals${skipped ? `; ${skipped} malformed items skipped` : ''}`);
    return { code: 200, body: `${taken}\n` };
  }
}
