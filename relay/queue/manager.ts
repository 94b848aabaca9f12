/**
 * The queue manager (Postfix's qmgr): takes durable messages from intake (or recovery),
 * splits them into delivery units per destination, opens connections as the scheduler
 * allows, applies each attempt's settlement to the spool, and finishes a message with at
 * most one failure notice to its sender. The decisions live beside it as pure functions
 * (scheduler.ts, settle.ts, regroup.ts, classify.ts); this module and connection.ts,
 * notices.ts and signing.ts do the I/O.
 */
import os from 'node:os';
import type { Logger } from 'pino';
import { configuredDomainOf } from '../address.js';
import type { RecipientOutcome } from '../delivery/outcome.js';
import type { Route, RouteSession } from '../delivery/routes.js';
import type { DkimSigner } from '../dkim.js';
import { OTHER, type Provider } from '../delivery/providers.js';
import type { QueueMetrics } from '../metrics.js';
import type { DeliverySpool, SpoolEntry } from '../spool/spool.js';
import { ProviderClassifier, type Classified } from './classify.js';
import { runConnection, type ConnectionHost } from './connection.js';
import { IdleConnections } from './idle.js';
import { isNotice, storeNotice } from './notices.js';
import { regroup } from './regroup.js';
import { Scheduler, type Unit } from './scheduler.js';
import { bounceNoticeDue, settle, type RecipientResult } from './settle.js';
import { outgoingOf, type Outgoing, type SigningSlot } from './signing.js';
import { trackingPlan, type TrackingOwner } from '../links/tracking.js';
import type { DsnRecipient } from '../bounce.js';
import { envelopeSenderFor, type ReturnPathOwner } from '../bounces/return-path.js';
import { arrivalEvents, attemptEvent, noticeEvents, type EventContext, type RelayEvent } from '../events/event.js';

/** Where events happen: the pod's name under Kubernetes (its hostname). */
const POD = os.hostname();

export interface QueueSettings {
  hostname: string;
  messagesPerConnection: number;
  maxConnections: number;
  maxConnectionsPerDestination: number;
  minBackoff: number;
  maxBackoff: number;
  lifetime: number;
  delayNoticeAfter: number;
  /** Seconds an idle outbound connection waits for more mail before it closes. */
  idleConnectionTime: number;
  /** Providers whose domains share limits (MX rollup); none: every destination stands alone. */
  providers?: Provider[];
  /** The configured sender domains: the bounded `sender_domain` label of the outcomes per sender domain. */
  senderDomains?: string[];
  /** Sender domains with a return path (VERP), and the fleet's key that signs its tokens. */
  returnPaths?: ReturnPathOwner[];
  returnPathKey?: string;
  /** The sender domains with open and click tracking, and the fleet's link key. */
  tracking?: TrackingOwner[];
  linksKey?: string;
}

interface MessageRecord extends SigningSlot {
  entry: SpoolEntry;
  /** Units of this message not finished yet. */
  openUnits: number;
  /** Serialises state-file writes of one message. */
  saving: Promise<void>;
}

export interface QueueDeps {
  spool: DeliverySpool;
  route: Route;
  log: Logger;
  metrics: QueueMetrics;
  /** The clock (tests drive a fake one). */
  now: () => number;
  /** Signs mail of the configured sender domains before its first attempt (replaced on reload). */
  signer?: DkimSigner;
  /** Told of every recipient that failed for good at the destination (the suppression list listens). */
  onPermanentFailure?: (failure: PermanentFailure) => void;
  /**
   * Where events go (relay/events/publisher.ts), written before the progress they tell of is
   * recorded; without it (or while it wants none) no event is made.
   */
  events?: { readonly enabled: boolean; publish(events: readonly RelayEvent[]): void };
}

export interface PermanentFailure {
  sender: string;
  recipient: string;
  statusCode: string;
  reply: string;
  at: number;
}

export class QueueManager implements ConnectionHost {
  readonly scheduler: Scheduler;
  readonly idle = new IdleConnections();
  readonly sessions = new Set<RouteSession>();
  private readonly messages = new Map<string, MessageRecord>();
  private readonly connections = new Set<Promise<void>>();
  private readonly classifier: ProviderClassifier;
  private route: Route;
  private timer: NodeJS.Timeout | undefined;
  private isRunning = false;
  readonly now: () => number;
  readonly spool: DeliverySpool;
  readonly log: Logger;
  readonly metrics: QueueMetrics;

  constructor(
    private config: QueueSettings,
    private readonly deps: QueueDeps,
  ) {
    this.route = deps.route;
    this.now = deps.now;
    this.spool = deps.spool;
    this.log = deps.log;
    this.metrics = deps.metrics;
    this.classifier = new ProviderClassifier(this.route, config.providers ?? [], this.now, () => this.pump());
    this.scheduler = new Scheduler(this.schedulerOptions(config));
  }

  private schedulerOptions(settings: QueueSettings) {
    const providers = new Map((settings.providers ?? []).map((p) => [p.name, p]));
    return {
      ...settings,
      jitter: Math.random,
      groupOf: (d: string) => this.classifier.get(d)?.group,
      groupLimits: (g: string) => providers.get(g),
      onInvalidUnit: (unit: Unit, fields: string[]) => this.log.warn({ event: 'invalid_schedule', queueId: unit.messageId, destination: unit.destination, fields }, 'a message came with a time that is not a number; it is tried now'),
    };
  }

  settings(): QueueSettings {
    return this.config;
  }

  running(): boolean {
    return this.isRunning;
  }

  message(id: string): MessageRecord | undefined {
    return this.messages.get(id);
  }

  envelopeSender(entry: SpoolEntry): string {
    return envelopeSenderFor(entry.envelope.sender, entry.envelope.id, this.config.returnPaths ?? [], this.config.returnPathKey);
  }

  sign(record: MessageRecord): Promise<Outgoing> {
    const env = record.entry.envelope;
    const tracking = this.config.tracking?.length ? trackingPlan({ sender: env.sender, recipients: env.recipients.map((r) => r.address), queueId: env.id, notice: isNotice(env) }, this.config.tracking, this.config.linksKey) : undefined;
    return outgoingOf(record.entry, record, this.deps.signer, this.spool, this.metrics, tracking);
  }

  /** New limits and route (config reload). Connections already open finish as they were. */
  reconfigure(settings: QueueSettings, route?: Route, signer?: DkimSigner): void {
    this.config = settings;
    if (signer) this.deps.signer = signer; // rotated keys sign from the next message on
    if (route) this.route = route;
    this.classifier.reset(this.route, settings.providers ?? []); // providers or the route may have changed
    this.scheduler.reconfigure(this.schedulerOptions(settings));
    if (route) this.regroup();
    this.pump();
  }

  /** Waiting units move under the new route's destinations; units in flight finish on their connection. */
  private regroup(): void {
    const waiting = this.scheduler.takeAllWaiting().filter((u) => this.messages.has(u.messageId));
    const { units, unitsAdded } = regroup(waiting, (r) => this.route.destinationOf(r));
    for (const [id, n] of unitsAdded) this.messages.get(id)!.openUnits += n;
    const now = this.now();
    for (const unit of units) this.scheduler.add(unit, now);
  }

  get size(): number {
    return this.messages.size;
  }

  /** Adds a durable message; its pending recipients become units per destination. */
  enqueue(entry: SpoolEntry): void {
    const env = entry.envelope;
    // Intake hands over small bodies; keep them only while the cache has room.
    if (entry.body && !this.spool.reserveCache(entry.body.length)) entry.body = undefined;
    const byDestination = new Map<string, string[]>();
    for (const r of env.recipients) {
      if (r.status !== 'pending') continue;
      const dest = this.route.destinationOf(r.address);
      byDestination.set(dest, [...(byDestination.get(dest) ?? []), r.address]);
    }
    const record: MessageRecord = { entry, openUnits: byDestination.size, saving: Promise.resolve() };
    this.messages.set(env.id, record);
    // A message not yet attempted (again after a restart: the same events, the same ids) or taken from a peer.
    if (!isNotice(env) && (env.attempts === 0 || env.handedOverFrom) && this.deps.events?.enabled) this.deps.events.publish(arrivalEvents(env, this.eventContext(this.now())));
    if (byDestination.size === 0) {
      void this.finish(record);
      return;
    }
    const now = this.now();
    for (const [destination, recipients] of byDestination) {
      this.scheduler.add({ id: `${env.id}/${destination}`, messageId: env.id, destination, recipients, attempts: env.attempts, dueAt: env.nextAttemptAt, receivedAt: env.receivedAt }, now);
    }
    this.pump();
  }

  start(): void {
    this.isRunning = true;
    this.pump();
  }

  /** Stops opening connections; resolves when open ones finish or the deadline passes. */
  async stop(deadlineMs: number): Promise<void> {
    this.isRunning = false;
    clearTimeout(this.timer);
    this.idle.release();
    const remaining = Math.max(0, deadlineMs - this.now());
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.connections]), new Promise((r) => (timeout = setTimeout(r, remaining)))]);
    clearTimeout(timeout);
    await Promise.all([...this.sessions].map((s) => s.close()));
    await Promise.allSettled([...this.messages.values()].map((m) => m.saving));
  }

  /** Opens every connection the scheduler allows now, and arms the timer for the next due unit. */
  pump(): void {
    if (!this.isRunning) return;
    const now = this.now();
    this.scheduler.tick(now);
    for (const d of this.scheduler.unclassified()) this.classifier.classify(d);
    // Ready units go to idle connections first; new connections only for the rest.
    this.idle.wake((destination) => this.scheduler.readyFor(destination, now));
    for (let dest = this.scheduler.openConnection(now); dest; dest = this.scheduler.openConnection(now)) {
      const destination = dest;
      const run = runConnection(this, this.route, destination).catch((err) => this.log.error({ err, destination }, 'connection worker failed'));
      this.connections.add(run);
      void run.finally(() => this.connections.delete(run));
    }
    clearTimeout(this.timer);
    const next = this.scheduler.nextDueAt(this.now());
    if (next !== undefined) {
      // Timers beyond ~24 days overflow; wake at least every minute anyway.
      this.timer = setTimeout(() => this.pump(), Math.min(Math.max(next - this.now(), 0) + 5, 60_000));
    }
  }

  /** Applies one attempt's settlement: recipients' states, log and metrics, then retry or finish the unit. */
  async settle(unit: Unit, outcomes: RecipientOutcome[], destination: string, interrupted = false): Promise<void> {
    const record = this.messages.get(unit.messageId);
    if (!record) return;
    const env = record.entry.envelope;
    const now = this.now();
    const s = settle({ envelope: env, outcomes, now, interrupted, decideRetry: () => this.scheduler.decideAfterFailure(unit, now), delayNoticeAfter: this.config.delayNoticeAfter, lifetime: this.config.lifetime });
    const classified = this.classifier.get(destination);
    if (s.throttledBy && classified) this.throttle(classified, s.throttledBy.reply, now);
    for (const updated of s.recipients) Object.assign(env.recipients.find((r) => r.address === updated.address)!, updated);
    for (const result of s.results) this.report(env, unit, result, classified?.label ?? OTHER, now);

    if (s.next.kind === 'retry') {
      unit.recipients = s.next.recipients;
      this.scheduler.defer(unit, s.next.at, now);
      // A reload changed the route while this unit was out: it waits under the new route's destinations.
      if (unit.recipients.some((r) => this.route.destinationOf(r) !== unit.destination)) this.regroup();
      env.attempts = Math.max(env.attempts, unit.attempts);
      env.nextAttemptAt = s.next.at;
      if (s.delayNotice) await this.sendDelayNotice(record, s.delayNotice, now);
      await this.saveState(record);
      return;
    }
    this.scheduler.complete(unit);
    record.openUnits--;
    if (record.openUnits > 0) await this.saveState(record);
    else await this.finish(record);
  }

  /**
   * One recipient's outcome in the log and the metrics; a bounce from the destination also to
   * the suppression list. The relay's own notices are counted apart: a DSN that cannot reach a
   * noreply@ sender is not a bounce of the sender's mail (it doubled the bounce rate).
   */
  private report(env: SpoolEntry['envelope'], unit: Unit, r: RecipientResult, provider: string, now: number): void {
    const notice = isNotice(env);
    const fields = { queueId: env.id, messageId: env.messageId, recipientDomain: r.address.split('@').pop(), reply: r.reply, remoteMta: r.remoteMta, attempts: unit.attempts + 1, notice: notice || undefined };
    if (r.result === 'delivered') this.log.info({ event: 'delivered', ...fields }, 'delivered');
    else if (r.result === 'bounced') this.log.info({ event: 'bounced', ...fields }, 'bounced');
    else this.log.info({ event: 'deferred', ...fields, retryAt: r.retryAt !== undefined ? new Date(r.retryAt).toISOString() : undefined }, 'deferred');
    if (!notice && this.deps.events?.enabled) this.deps.events.publish([attemptEvent(env, this.eventContext(now), r, unit.attempts + 1)]);
    if (r.permanent) this.deps.onPermanentFailure?.({ sender: env.sender, recipient: r.address, statusCode: r.statusCode, reply: r.reply, at: now });
    if (notice) {
      this.metrics.notices.inc({ result: r.result });
      return;
    }
    this.metrics.deliveries.inc({ result: r.result, route: this.route.name, provider });
    this.metrics.senderDomainDeliveries.inc({ sender_domain: configuredDomainOf(env.sender, this.config.senderDomains ?? []) ?? OTHER, result: r.result });
    if (r.result !== 'deferred') this.metrics.residenceSeconds.observe((now - env.receivedAt) / 1000);
  }

  private eventContext(now: number): EventContext {
    return { relay: this.config.hostname, pod: POD, senderDomains: this.config.senderDomains ?? [], now };
  }

  /** The provider (or lone destination) said it is limiting us: all its mail waits, not just this message. */
  private throttle(classified: Classified, reply: string, now: number): void {
    const backoff = this.config.providers?.find((p) => p.name === classified.group)?.throttleBackoff ?? 300;
    const until = now + backoff * 1000;
    this.scheduler.pauseGroup(classified.group, until, now);
    this.log.warn({ event: 'provider_throttled', provider: classified.group, until: new Date(until).toISOString(), reply }, `${classified.group} is throttling: its mail waits ${backoff} s`);
  }

  private saveState(record: MessageRecord): Promise<void> {
    record.saving = record.saving
      .then(() => this.spool.saveState(record.entry))
      .catch((err) => this.log.warn({ err, queueId: record.entry.envelope.id }, 'could not record delivery progress; a retry may repeat a delivery'));
    return record.saving;
  }

  /** Every recipient has a final outcome: one DSN for the failed ones, then the message leaves the spool. */
  private async finish(record: MessageRecord): Promise<void> {
    const env = record.entry.envelope;
    const failed = bounceNoticeDue(env, this.now());
    if (failed) {
      // The DSN must be durable before the original may go. If it cannot be stored (a full
      // spool), keep the original with its final statuses and try again in a minute.
      try {
        await this.notify(record, failed);
      } catch (err) {
        this.log.error({ err, queueId: env.id }, 'could not queue the delivery status notification; will try again in a minute');
        await this.saveState(record);
        setTimeout(() => void this.finish(record), 60_000).unref();
        return;
      }
    }
    await record.saving;
    this.messages.delete(env.id);
    await this.spool.remove(record.entry);
  }

  private async sendDelayNotice(record: MessageRecord, recipients: DsnRecipient[], now: number): Promise<void> {
    // Marked before the notice is stored (a DSN and an fsync): another unit of the message that
    // settles meanwhile must not queue a second one. Unmarked again if it cannot be stored.
    record.entry.envelope.delayNoticeSent = true;
    try {
      await this.notify(record, recipients, now);
    } catch (err) {
      record.entry.envelope.delayNoticeSent = false;
      this.log.warn({ err, queueId: record.entry.envelope.id }, 'could not queue the delay notice; will try after the next attempt');
    }
  }

  /** Stores a DSN to the sender and queues it like any message. */
  private async notify(record: MessageRecord, recipients: DsnRecipient[], now = this.now()): Promise<void> {
    const entry = await storeNotice(this.spool, this.config.hostname, record.entry, recipients, now);
    if (this.deps.events?.enabled && !isNotice(record.entry.envelope)) {
      const action = recipients[0]?.action === 'delayed' ? 'delayed' : 'failed';
      this.deps.events.publish(noticeEvents(record.entry.envelope, this.eventContext(now), { queueId: entry.envelope.id, action }, recipients.map((r) => r.address)));
    }
    this.log.info({ event: 'dsn', queueId: entry.envelope.id, originalQueueId: record.entry.envelope.id, action: recipients[0]?.action, recipients: recipients.length }, 'delivery status notification queued');
    this.enqueue(entry);
  }
}
