/**
 * The suppression list: recipients that hard-bounced, per sender domain, so the relay stops
 * sending to them (a sender that keeps mailing unknown users loses reputation at the big
 * providers). Intake asks it at every RCPT, so lookups are in memory.
 *
 * The truth is a JSON-lines file in the spool directory (relay/suppression-file.ts): each line
 * adds or removes an entry, in the order it happened, and replaying the lines gives the list.
 * The relay and `mailfleet suppressions` (another process, e.g. through `kubectl exec`) both
 * append to it; the relay reads what others appended by polling the file's size.
 *
 * A removal is kept for suppression.ttl (a tombstone): it covers the entries listed before it,
 * so one that a peer of the fleet still holds is not merged back (relay/fleet-suppressions.ts).
 */
import path from 'node:path';
import { domainOf } from './address.js';
import { SuppressionFile, type Line } from './suppression-file.js';

export const SUPPRESSION_FILE = 'suppressions.jsonl';

/**
 * Enhanced status codes (RFC 3463, RFC 7505) that say the address itself is bad for good:
 * no such mailbox (5.1.1), no such domain (5.1.2), a bad address (5.1.3), moved without a
 * forwarding address (5.1.6), a domain that takes no mail (5.1.10, null MX), a disabled
 * mailbox (5.2.1). Not the failures that are about this message or this sender: policy and
 * spam refusals (5.7.x), a full mailbox (5.2.2), size (5.3.4, 5.2.3), and not a 5xx reply
 * without an enhanced code (5.0.0): receivers use bare 550 for policy refusals too.
 */
const HARD_BOUNCES = new Set(['5.1.1', '5.1.2', '5.1.3', '5.1.6', '5.1.10', '5.2.1']);

export function isHardBounce(statusCode: string): boolean {
  return HARD_BOUNCES.has(statusCode);
}

export interface Suppression {
  senderDomain: string;
  recipient: string;
  /** When the (latest) hard bounce happened, ms since the epoch. */
  since: number;
  /** The enhanced status code and the reply of that bounce. */
  statusCode: string;
  reply: string;
  /** An unsubscribe: kept until removed (suppression.ttl is for bounces and complaints). */
  permanent?: boolean;
}

/**
 * A removal, kept for suppression.ttl after it was made: an entry listed before it that a peer
 * still holds (it missed the removal) is not taken back (a tombstone, as in gossip stores).
 */
export interface Removal {
  /** Undefined: for every sender domain. */
  senderDomain?: string;
  recipient: string;
  /** ms since the epoch */
  at: number;
}

export interface ListedSuppression extends Suppression {
  /** Undefined for a permanent entry. */
  expiresAt?: number;
}

/** A permanent delivery failure, as the queue reports it. */
export interface HardBounceCandidate {
  sender: string;
  /** The sender domain, when the sender is not known (a report to a return path names only the domain). */
  senderDomain?: string;
  /** A complaint (RFC 5965 report): listed whatever the status code. */
  complaint?: boolean;
  /** An unsubscribe (relay/links): listed whatever the status code, for good. */
  unsubscribe?: boolean;
  recipient: string;
  statusCode: string;
  reply: string;
  at: number;
}

export interface SuppressionOptions {
  /** Seconds an entry lives, asked on each use: a config reload applies to every entry. */
  ttl: () => number;
  now?: () => number;
  /** Told of failures in the background (an append or a poll that failed). */
  onError?: (err: Error) => void;
  /** Told of each entry this relay listed itself (not those merged from peers): relay/fleet-suppressions.ts shares them. */
  onAdded?: (s: Suppression) => void;
  /** Told of each removal made here or by `mailfleet suppressions remove` after the list was opened (not those merged from peers). */
  onRemoved?: (r: Removal) => void;
}

/** Quoted replies are cut here, so a stored line and the RCPT reply quoting it stay short. */
const MAX_REPLY = 160;
const SWEEP_EVERY_MS = 3600_000;

/** RFC 5321's longest path (256 octets) without its angle brackets. */
const MAX_RECIPIENT = 254;

/**
 * Whether the list takes this as a recipient (pure): a local part and a domain, at most 254
 * characters, no spaces or control characters. A DSN from anywhere can name anything (an empty
 * Final-Recipient, 1,000 characters of one), and one such entry shared with the fleet used to
 * make every peer refuse the batch it came in.
 */
export function listableRecipient(recipient: string): boolean {
  const at = recipient.lastIndexOf('@');
  return recipient.length <= MAX_RECIPIENT && at > 0 && at < recipient.length - 1 && !/[\s\p{Cc}]/u.test(recipient);
}

const keyOf = (senderDomain: string, recipient: string) => `${senderDomain}\0${recipient}`;
/** A removal's key: '*' (not a domain name) for one from every sender domain. */
const removalKeyOf = (r: { senderDomain?: string; recipient: string }) => keyOf(r.senderDomain ?? '*', r.recipient);

/** How a complaint's entry starts its reply: "complaint (abuse) reported by ...". */
export const COMPLAINT_PREFIX = 'complaint ';
/** How an unsubscribe's entry starts its reply: "unsubscribed (one-click) from message ...". */
export const UNSUBSCRIBE_PREFIX = 'unsubscribed ';

/** "suppressed since 2026-11-28T10:00:00Z after a hard bounce (550 5.1.1 ...)": for RCPT replies and DSNs. */
export function describeSuppression(s: Suppression): string {
  const after = s.reply.startsWith(COMPLAINT_PREFIX) ? 'a complaint' : s.reply.startsWith(UNSUBSCRIBE_PREFIX) ? 'the recipient unsubscribed' : 'a hard bounce';
  return `suppressed since ${new Date(s.since).toISOString().replace(/\.\d{3}Z$/, 'Z')} after ${after} (${s.reply})`;
}

export function suppressionJson(s: ListedSuppression) {
  return { senderDomain: s.senderDomain, recipient: s.recipient, since: new Date(s.since).toISOString(), expires: s.expiresAt === undefined ? null : new Date(s.expiresAt).toISOString(), statusCode: s.statusCode, reply: s.reply };
}

export class SuppressionList {
  private readonly entries = new Map<string, Suppression>();
  private readonly removals = new Map<string, Removal>();
  /** Set once the file was read at open: removals read after that came from the CLI and are told (onRemoved). */
  private opened = false;
  private readonly now: () => number;
  private readonly store: SuppressionFile;
  /** Serialise reads and appends: two reads of the same bytes would both advance the offset. */
  private reading: Promise<void> = Promise.resolve();
  private writing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private lastSweep: number;
  /** Unreadable lines met so far (a line cut short by a full disk); compaction drops them. */
  skipped = 0;

  private constructor(
    readonly file: string,
    private readonly opts: SuppressionOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.lastSweep = this.now();
    this.store = new SuppressionFile(file);
  }

  /**
   * Reads the list from `dir`. The relay compacts it (only live entries stay); the CLI does
   * not, because it may run beside a relay that is appending (a line appended to the old file
   * during the rewrite would be lost: the relay compacts only at its start).
   */
  static async open(dir: string, opts: SuppressionOptions & { compact?: boolean }): Promise<SuppressionList> {
    const list = new SuppressionList(path.join(dir, SUPPRESSION_FILE), opts);
    await list.refresh();
    list.opened = true;
    // Not fatal (a full disk): the long file works as well, and the next start tries again.
    if (opts.compact) await list.compact().catch((err: Error) => opts.onError?.(err));
    return list;
  }

  private ttlMs(): number {
    return this.opts.ttl() * 1000;
  }

  private live(s: Suppression, now = this.now()): boolean {
    return !!s.permanent || s.since + this.ttlMs() > now;
  }

  /**
   * The entry that suppresses mail from `sender` to `recipient`, if one is live: listed for the
   * sender's domain or a parent of it (reports and unsubscribes list the configured sender
   * domain, which covers its subdomains). Never for the null sender.
   */
  lookup(sender: string, recipient: string): Suppression | undefined {
    if (!sender) return undefined;
    const rcpt = recipient.toLowerCase();
    for (let domain = domainOf(sender); domain; domain = domain.slice(domain.indexOf('.') + 1 || domain.length)) {
      const key = keyOf(domain, rcpt);
      const s = this.entries.get(key);
      if (s && this.live(s)) return s;
      if (s) this.entries.delete(key);
    }
    return undefined;
  }

  /**
   * Records a permanent failure if it is a hard bounce of a real sender (DSNs, sent from
   * `<>`, have no sender domain). Resolves at once; the line is appended in the background.
   * Returns whether the address is newly suppressed (false when it was already, or when the
   * failure does not count).
   */
  add(bounce: HardBounceCandidate): boolean {
    const senderDomain = bounce.senderDomain ?? (bounce.sender ? domainOf(bounce.sender) : '');
    if (!listableRecipient(bounce.recipient)) return false;
    if (!senderDomain || (!bounce.complaint && !bounce.unsubscribe && !isHardBounce(bounce.statusCode))) return false;
    const listed = this.entries.get(keyOf(senderDomain.toLowerCase(), bounce.recipient.toLowerCase()));
    const fresh = !listed || !this.live(listed);
    // A bounce after an unsubscribe does not make the entry expire.
    if (listed?.permanent && !bounce.unsubscribe) return false;
    const reply = bounce.reply.replace(/\s+/g, ' ').trim().slice(0, MAX_REPLY);
    const line: Line = { op: 'add', senderDomain: senderDomain.toLowerCase(), recipient: bounce.recipient.toLowerCase(), at: new Date(bounce.at).toISOString(), statusCode: bounce.statusCode, reply, ...(bounce.unsubscribe ? { permanent: true as const } : {}) };
    this.record(line);
    const now = this.entries.get(keyOf(line.senderDomain, line.recipient));
    if (now) this.opts.onAdded?.(now);
    return fresh;
  }

  /**
   * Takes an entry a peer listed (relay/fleet-suppressions.ts), unless this list has it
   * already, as new or newer; an unsubscribe is never replaced by a bounce. Returns whether it
   * was taken.
   */
  merge(s: Suppression): boolean {
    const senderDomain = s.senderDomain.toLowerCase();
    const recipient = s.recipient.toLowerCase();
    if (!listableRecipient(recipient)) return false;
    const listed = this.entries.get(keyOf(senderDomain, recipient));
    // An unsubscribe replaces a bounce listed here, older or newer: it never expires, the bounce does.
    const unsubscribes = !!s.permanent && !!listed && !listed.permanent;
    if (listed && this.live(listed) && !unsubscribes && (listed.since >= s.since || (listed.permanent && !s.permanent))) return false;
    const line: Line = { op: 'add', senderDomain, recipient, at: new Date(s.since).toISOString(), statusCode: s.statusCode, reply: s.reply.slice(0, MAX_REPLY), ...(s.permanent ? { permanent: true as const } : {}) };
    if (!this.live({ ...s, permanent: !!s.permanent }) || this.removedSince(senderDomain, recipient, s.since)) return false;
    this.record(line);
    return true;
  }

  /**
   * Removes `recipient` for one sender domain, or for every one. Reads what other writers
   * appended first, so the answer is about the current list. Resolves with what was removed
   * once the removal is in the file.
   */
  async remove(recipient: string, senderDomain?: string): Promise<ListedSuppression[]> {
    await this.refresh();
    const rcpt = recipient.toLowerCase();
    const domain = senderDomain?.toLowerCase();
    const removed = this.list(domain).filter((s) => s.recipient === rcpt);
    if (!removed.length) return [];
    const line: Line = { op: 'remove', senderDomain: domain, recipient: rcpt, at: new Date(this.now()).toISOString() };
    this.apply(line);
    const written = this.writing.then(() => this.store.append(line));
    this.writing = written.catch(() => undefined);
    await written;
    this.opts.onRemoved?.({ senderDomain: domain, recipient: rcpt, at: Date.parse(line.at) });
    return removed;
  }

  /**
   * Takes a removal a peer made (relay/fleet-suppressions.ts): the entries it covers that were
   * listed before it go, and it is kept as this list's own. Returns whether it was new here.
   */
  mergeRemoval(r: Removal): boolean {
    const removal: Removal = { ...(r.senderDomain !== undefined && { senderDomain: r.senderDomain.toLowerCase() }), recipient: r.recipient.toLowerCase(), at: r.at };
    const known = this.removals.get(removalKeyOf(removal));
    if ((known && known.at >= removal.at) || !this.removalLive(removal)) return false;
    const line: Line = { op: 'remove', senderDomain: removal.senderDomain, recipient: removal.recipient, at: new Date(removal.at).toISOString() };
    this.record(line);
    return true;
  }

  /** Removals still kept (for suppression.ttl after they were made), oldest first. */
  listRemovals(): Removal[] {
    return [...this.removals.values()].filter((r) => this.removalLive(r)).sort((a, b) => a.at - b.at);
  }

  private removalLive(r: Removal, now = this.now()): boolean {
    return r.at + this.ttlMs() > now;
  }

  /** Whether a removal for this address, made at or after `since`, covers an entry of `senderDomain`. */
  private removedSince(senderDomain: string, recipient: string, since: number): boolean {
    for (const key of [keyOf(senderDomain, recipient), removalKeyOf({ recipient })]) {
      const r = this.removals.get(key);
      if (r && r.at >= since && this.removalLive(r)) return true;
    }
    return false;
  }

  /** Live entries, oldest first. */
  list(senderDomain?: string): ListedSuppression[] {
    const now = this.now();
    const ttl = this.ttlMs();
    return [...this.entries.values()]
      .filter((s) => this.live(s, now) && (senderDomain === undefined || s.senderDomain === senderDomain.toLowerCase()))
      .sort((a, b) => a.since - b.since)
      .map((s) => ({ ...s, expiresAt: s.permanent ? undefined : s.since + ttl }));
  }

  /** Applies lines appended since the last read; starts over when the file was replaced or removed. */
  refresh(): Promise<void> {
    const run = this.reading.then(() => this.readAppended());
    this.reading = run.catch(() => undefined);
    return run;
  }

  /** Polls the file for other writers' lines (the CLI's removals). */
  watch(intervalMs: number): void {
    this.timer = setInterval(() => {
      this.refresh().catch((err: Error) => this.opts.onError?.(err));
      if (this.now() - this.lastSweep > SWEEP_EVERY_MS) this.sweep();
    }, intervalMs);
    this.timer.unref();
  }

  /** Stops polling and waits for pending appends. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.writing;
    await this.reading;
  }

  private sweep(): void {
    this.lastSweep = this.now();
    for (const [key, s] of this.entries) if (!this.live(s, this.lastSweep)) this.entries.delete(key);
    for (const [key, r] of this.removals) if (!this.removalLive(r, this.lastSweep)) this.removals.delete(key);
  }

  /** Applies one line; for a removal, says whether it was new to this list. */
  private apply(line: Line): boolean {
    if (line.op === 'add') {
      const s: Suppression = { senderDomain: line.senderDomain, recipient: line.recipient, since: Date.parse(line.at), statusCode: line.statusCode, reply: line.reply, ...(line.permanent ? { permanent: true } : {}) };
      const key = keyOf(s.senderDomain, s.recipient);
      if (this.live(s)) this.entries.set(key, s);
      else this.entries.delete(key);
      return false;
    }
    const removal: Removal = { ...(line.senderDomain !== undefined && { senderDomain: line.senderDomain }), recipient: line.recipient, at: Date.parse(line.at) };
    const known = this.removals.get(removalKeyOf(removal));
    const fresh = !known || known.at < removal.at;
    if (fresh) this.removals.set(removalKeyOf(removal), removal);
    // An entry listed after the removal (a new bounce) stays: a peer's removal may arrive late.
    const covered = (s: Suppression) => s.since <= removal.at;
    if (line.senderDomain !== undefined) {
      const key = keyOf(line.senderDomain, line.recipient);
      const s = this.entries.get(key);
      if (s && covered(s)) this.entries.delete(key);
      return fresh;
    }
    for (const [key, s] of this.entries) if (s.recipient === line.recipient && covered(s)) this.entries.delete(key);
    return fresh;
  }

  private async readAppended(): Promise<void> {
    const { reset, lines, skipped } = await this.store.readAppended();
    if (reset) {
      this.entries.clear();
      this.removals.clear();
    }
    this.skipped += skipped;
    for (const line of lines) {
      // A removal new to the list after it was opened is `mailfleet suppressions remove`'s: told, so the fleet hears of it.
      if (this.apply(line) && this.opened && line.op === 'remove') this.opts.onRemoved?.({ senderDomain: line.senderDomain, recipient: line.recipient, at: Date.parse(line.at) });
    }
  }

  /** Applies a line here and appends it to the file after the writes before it, in the background (a failure goes to onError). */
  private record(line: Line): void {
    this.apply(line);
    this.writing = this.writing.then(() => this.store.append(line)).catch((err: Error) => this.opts.onError?.(err));
  }

  /** Rewrites the file with one add line per live entry and one remove line per kept removal. */
  private async compact(): Promise<void> {
    await this.store.rewrite([
      ...this.list().map((s) => ({ op: 'add', senderDomain: s.senderDomain, recipient: s.recipient, at: new Date(s.since).toISOString(), statusCode: s.statusCode, reply: s.reply, ...(s.permanent ? { permanent: true as const } : {}) }) satisfies Line),
      // After the adds: a removal covers only entries listed before it, and those are gone already.
      ...this.listRemovals().map((r) => ({ op: 'remove', senderDomain: r.senderDomain, recipient: r.recipient, at: new Date(r.at).toISOString() }) satisfies Line),
    ]);
  }
}
