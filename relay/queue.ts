/**
 * The queue manager: takes durable messages from intake (or recovery), splits them into
 * delivery units per destination, runs connections as the scheduler allows, records each
 * recipient's outcome in the spool, and finishes a message with at most one DSN to its
 * sender. The scheduler decides; this module does the I/O.
 */
import type { Logger } from 'pino';
import { Readable } from 'node:stream';
import { buildDsn, mayBounce, type DsnRecipient } from './bounce.js';
import { DeliveryFailure, type RecipientOutcome } from './delivery/outcome.js';
import type { OutboundMessage, Route, RouteSession } from './delivery/routes.js';
import type { DkimSigner } from './dkim.js';
import { isThrottling, OTHER, type Provider } from './delivery/providers.js';
import type { QueueMetrics } from './metrics.js';
import { Scheduler, type Unit } from './scheduler.js';
import { newQueueId, type Envelope, type Spool, type SpoolEntry } from './spool.js';

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
}

/** What the queue knows of a destination's provider. */
interface Classified {
  /** The scheduler group: a provider's name, or the destination itself when it has none. */
  group: string;
  /** The `provider` metric label. */
  label: string;
  expiresAt: number;
}

const CLASSIFICATION_TTL_MS = 3600_000;

interface MessageRecord {
  entry: SpoolEntry;
  /** Units of this message not finished yet. */
  openUnits: number;
  /** Serialises state-file writes of one message. */
  saving: Promise<void>;
  /** The DKIM signature being made (units to several destinations share it). */
  signing?: Promise<string>;
}

export interface QueueDeps {
  spool: Spool;
  route: Route;
  log: Logger;
  metrics: QueueMetrics;
  now?: () => number;
  /** Signs mail of the configured sender domains before its first attempt (replaced on reload). */
  signer?: DkimSigner;
  /** Told of every recipient that failed for good at the destination (the suppression list listens). */
  onPermanentFailure?: (failure: PermanentFailure) => void;
}

export interface PermanentFailure {
  sender: string;
  recipient: string;
  statusCode: string;
  reply: string;
  at: number;
}

export class QueueManager {
  readonly scheduler: Scheduler;
  private readonly messages = new Map<string, MessageRecord>();
  private readonly sessions = new Set<RouteSession>();
  private readonly connections = new Set<Promise<void>>();
  private route: Route;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly now: () => number;

  constructor(
    private settings: QueueSettings,
    private readonly deps: QueueDeps,
  ) {
    this.route = deps.route;
    this.now = deps.now ?? Date.now;
    this.scheduler = new Scheduler(this.schedulerOptions(settings));
  }

  private schedulerOptions(settings: QueueSettings) {
    const providers = new Map((settings.providers ?? []).map((p) => [p.name, p]));
    return {
      ...settings,
      jitter: Math.random,
      groupOf: (d: string) => this.classified(d)?.group,
      groupLimits: (g: string) => providers.get(g),
      onInvalidUnit: (unit: Unit, fields: string[]) => this.deps.log.warn({ event: 'invalid_schedule', queueId: unit.messageId, destination: unit.destination, fields }, 'a message came with a time that is not a number; it is tried now'),
    };
  }

  private readonly classification = new Map<string, Classified>();
  private readonly classifying = new Set<string>();

  private classified(destination: string): Classified | undefined {
    const c = this.classification.get(destination);
    return c && c.expiresAt > this.now() ? c : undefined;
  }

  /** Finds the provider of a destination (an MX lookup for the mx route), then pumps again. */
  private classify(destination: string): void {
    if (this.classifying.has(destination)) return;
    this.classifying.add(destination);
    const route = this.route;
    void route
      .providerOf(destination)
      .catch(() => OTHER)
      .then((label) => {
        this.classifying.delete(destination);
        if (route !== this.route) return; // the route changed meanwhile: ask the new one
        const named = label !== OTHER && (this.settings.providers ?? []).some((p) => p.name === label);
        if (this.classification.size > 50_000) this.classification.clear();
        this.classification.set(destination, { group: named ? label : destination, label, expiresAt: this.now() + CLASSIFICATION_TTL_MS });
        this.pump();
      });
  }

  /** New limits and route (config reload). Connections already open finish as they were. */
  reconfigure(settings: QueueSettings, route?: Route, signer?: DkimSigner): void {
    this.settings = settings;
    if (signer) this.deps.signer = signer; // rotated keys sign from the next message on
    this.scheduler.reconfigure(this.schedulerOptions(settings));
    this.classification.clear(); // providers or the route may have changed
    if (route) {
      this.route = route;
      this.regroup();
    }
    this.pump();
  }

  /**
   * A new route names destinations differently (a smarthost instead of recipient domains):
   * waiting units are regrouped under the new route's destinations, keeping their timing.
   * Units in flight finish on the connection they are on.
   */
  private regroup(): void {
    const now = this.now();
    // Per message and new destination: its recipients, the earliest due time, the most attempts.
    const merged = new Map<string, Unit>();
    for (const unit of this.scheduler.takeAllWaiting()) {
      const record = this.messages.get(unit.messageId);
      if (!record) continue;
      record.openUnits--;
      for (const r of unit.recipients) {
        const destination = this.route.destinationOf(r);
        const id = `${unit.messageId}/${destination}`;
        const into = merged.get(id);
        if (into) {
          into.recipients.push(r);
          into.dueAt = Math.min(into.dueAt, unit.dueAt);
          into.attempts = Math.max(into.attempts, unit.attempts);
        } else {
          merged.set(id, { ...unit, id, destination, recipients: [r] });
          record.openUnits++;
        }
      }
    }
    for (const unit of merged.values()) this.scheduler.add(unit, now);
  }

  get size(): number {
    return this.messages.size;
  }

  /** Adds a durable message; its pending recipients become units per destination. */
  enqueue(entry: SpoolEntry): void {
    const env = entry.envelope;
    // Intake hands over small bodies; keep them only while the cache has room.
    if (entry.body && !this.deps.spool.reserveCache(entry.body.length)) entry.body = undefined;
    const byDestination = new Map<string, string[]>();
    for (const r of env.recipients) {
      if (r.status !== 'pending') continue;
      const dest = this.route.destinationOf(r.address);
      byDestination.set(dest, [...(byDestination.get(dest) ?? []), r.address]);
    }
    const record: MessageRecord = { entry, openUnits: byDestination.size, saving: Promise.resolve() };
    this.messages.set(env.id, record);
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
    this.running = true;
    this.pump();
  }

  /** Stops opening connections; resolves when open ones finish or the deadline passes. */
  async stop(deadlineMs: number): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    for (const waiters of this.idle.values()) for (const wake of [...waiters]) wake(false);
    const remaining = Math.max(0, deadlineMs - this.now());
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.connections]), new Promise((r) => (timeout = setTimeout(r, remaining)))]);
    clearTimeout(timeout);
    await Promise.all([...this.sessions].map((s) => s.close()));
    await Promise.allSettled([...this.messages.values()].map((m) => m.saving));
  }

  /** Idle connections waiting for mail, per destination. */
  private readonly idle = new Map<string, Set<(work: boolean) => void>>();

  /** Resolves true when a unit for this destination may be ready, false after the idle time. */
  private waitForWork(destination: string): Promise<boolean> {
    if (!this.running || this.settings.idleConnectionTime <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiters = this.idle.get(destination) ?? new Set();
      this.idle.set(destination, waiters);
      const wake = (work: boolean) => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (!waiters.size) this.idle.delete(destination);
        resolve(work);
      };
      const timer = setTimeout(() => wake(false), this.settings.idleConnectionTime * 1000);
      waiters.add(wake);
    });
  }

  /** Hands ready units to idle connections first; pump() then opens new ones only for the rest. */
  private wakeIdle(): void {
    for (const [destination, waiters] of this.idle) {
      let ready = this.scheduler.readyFor(destination, this.now());
      for (const wake of [...waiters]) {
        if (ready-- <= 0) break;
        wake(true);
      }
    }
  }

  /** Opens every connection the scheduler allows now, and arms the timer for the next due unit. */
  pump(): void {
    if (!this.running) return;
    const now = this.now();
    this.scheduler.tick(now);
    for (const d of this.scheduler.unclassified()) this.classify(d);
    this.wakeIdle();
    for (let dest = this.scheduler.openConnection(now); dest; dest = this.scheduler.openConnection(now)) {
      const run = this.runConnection(dest).catch((err) => this.deps.log.error({ err, destination: dest }, 'connection worker failed'));
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

  private async runConnection(destination: string): Promise<void> {
    let session: RouteSession;
    try {
      session = await this.route.connect(destination);
    } catch (err) {
      const failure = err instanceof DeliveryFailure ? err : new DeliveryFailure('deferred', '4.4.2', `cannot deliver: ${(err as Error).message}`);
      // A dead destination: every unit ready for it now shares the outcome, without a connection
      // each. But while other connections to it work (a 421 on the twentieth connection), only
      // the one unit this connection would have carried pays for the failure.
      const others = this.scheduler.connectionsTo(destination) - 1;
      const one = others > 0 ? this.scheduler.take(destination, this.now()) : undefined;
      const units = others > 0 ? (one ? [one] : []) : this.scheduler.drainDestination(destination);
      this.scheduler.closeConnection(destination, this.now());
      await Promise.all(units.map((u) => this.settle(u, failure.forRecipients(u.recipients), destination)));
      this.pump();
      return;
    }
    this.sessions.add(session);
    try {
      for (let sent = 0; sent < this.settings.messagesPerConnection && session.usable && this.running; sent++) {
        const unit = this.scheduler.take(destination, this.now());
        if (!unit) {
          // Keep the connection a moment for mail that is about to come (Postfix's connection
          // cache does the same): a steady trickle then costs no connection per message.
          if (await this.waitForWork(destination)) {
            sent--;
            continue;
          }
          break;
        }
        const record = this.messages.get(unit.messageId);
        if (!record) {
          this.scheduler.complete(unit);
          continue;
        }
        let signature: string;
        try {
          signature = await this.signatureOf(record);
        } catch (err) {
          // Never unsigned: the message waits, and the log says which key failed.
          this.deps.log.error({ err, queueId: unit.messageId }, 'DKIM signing failed');
          await this.settle(unit, new DeliveryFailure('deferred', '4.3.0', `DKIM signing failed, the message waits rather than leave unsigned: ${(err as Error).message}`).forRecipients(unit.recipients), destination);
          continue;
        }
        const started = process.hrtime.bigint();
        let outcomes: RecipientOutcome[];
        try {
          outcomes = await session.deliver(this.outbound(record.entry, unit, signature));
        } catch (err) {
          // A local failure (the outbox disk is full, the body cannot be read): try again later.
          outcomes = new DeliveryFailure('deferred', '4.3.0', `local error while delivering: ${(err as Error).message}`).forRecipients(unit.recipients);
          await this.settle(unit, outcomes, destination, !this.running);
          break;
        }
        this.deps.metrics.attemptSeconds.observe({ route: this.route.name }, Number(process.hrtime.bigint() - started) / 1e9);
        await this.settle(unit, outcomes, destination, !this.running);
      }
    } finally {
      // The slot is free only once the connection is closed: until then the peer counts it.
      await session.close();
      this.sessions.delete(session);
      this.scheduler.closeConnection(destination, this.now());
      this.pump();
    }
  }

  private outbound(entry: SpoolEntry, unit: Unit, signature: string): OutboundMessage {
    const spool = this.deps.spool;
    return {
      id: entry.envelope.id,
      sender: entry.envelope.sender,
      recipients: unit.recipients,
      size: entry.bodyLength + Buffer.byteLength(signature),
      eightBit: entry.envelope.eightBit,
      body: () => {
        // A Buffer spares nodemailer a stream and a pipe for every message.
        if (entry.body) return signature ? Buffer.concat([Buffer.from(signature), entry.body]) : entry.body;
        return signature ? Readable.from(prepend(Buffer.from(signature), spool.openBody(entry))) : spool.openBody(entry);
      },
    };
  }

  /** The message's DKIM signature, made once (before its first attempt) and kept in its state. */
  private signatureOf(record: MessageRecord): Promise<string> {
    const env = record.entry.envelope;
    const signer = this.deps.signer;
    if (env.dkimSignature !== undefined) return Promise.resolve(env.dkimSignature);
    if (!signer || signer.empty) return Promise.resolve('');
    record.signing ??= signer.sign(this.deps.spool.openBody(record.entry), env.headerLength).then(
      (signed) => {
        env.dkimSignature = signed?.headers ?? '';
        if (signed) for (const algorithm of signed.algorithms) this.deps.metrics.dkimSignatures.inc({ domain: signed.domain, algorithm });
        return env.dkimSignature;
      },
      (err: unknown) => {
        record.signing = undefined; // the next attempt tries again
        throw err;
      },
    );
    return record.signing;
  }

  /** Records outcomes for a unit's recipients; retries the deferred ones or bounces them once expired. */
  /**
   * `interrupted`: the relay is stopping and cut this attempt short itself: what did not go is
   * due again at once (for the next start or the peer it is handed to), not after a backoff.
   */
  private async settle(unit: Unit, outcomes: RecipientOutcome[], destination: string, interrupted = false): Promise<void> {
    const record = this.messages.get(unit.messageId);
    if (!record) return;
    const env = record.entry.envelope;
    const now = this.now();
    const classified = this.classified(destination);
    const provider = classified?.label ?? OTHER;
    const deferred = outcomes.filter((o) => o.kind === 'deferred');
    const throttled = deferred.find((o) => isThrottling(o.reply, o.statusCode));
    if (throttled && classified) this.throttle(classified, throttled.reply, now);
    const decision = deferred.length ? (interrupted ? { kind: 'retry' as const, at: now } : this.scheduler.decideAfterFailure(unit, now)) : undefined;
    for (const o of outcomes) {
      const r = env.recipients.find((x) => x.address === o.address);
      if (!r) continue;
      Object.assign(r, { lastReply: o.reply, statusCode: o.statusCode, remoteMta: o.remoteMta });
      const fields = { queueId: env.id, messageId: env.messageId, recipientDomain: o.address.split('@').pop(), reply: o.reply, remoteMta: o.remoteMta, attempts: unit.attempts + 1 };
      if (o.kind === 'delivered') {
        r.status = 'delivered';
        this.deps.log.info({ event: 'delivered', ...fields }, 'delivered');
      } else if (o.kind === 'failed' || decision?.kind === 'expired') {
        r.status = 'failed';
        if (o.kind === 'failed') this.deps.onPermanentFailure?.({ sender: env.sender, recipient: o.address, statusCode: o.statusCode, reply: o.reply, at: now });
        if (o.kind === 'deferred') {
          r.statusCode = '4.4.7';
          r.lastReply = `message expired after ${Math.round((now - env.receivedAt) / 3600_000)} h in the queue; last reply: ${o.reply}`;
        }
        this.deps.log.info({ event: 'bounced', ...fields, reply: r.lastReply }, 'bounced');
      } else {
        this.deps.log.info({ event: 'deferred', ...fields, retryAt: decision ? new Date(decision.at).toISOString() : undefined }, 'deferred');
      }
      const result = r.status === 'pending' ? 'deferred' : r.status === 'delivered' ? 'delivered' : 'bounced';
      this.deps.metrics.deliveries.inc({ result, route: this.route.name, provider });
      if (r.status !== 'pending') this.deps.metrics.residenceSeconds.observe((now - env.receivedAt) / 1000);
    }

    if (decision?.kind === 'retry') {
      unit.recipients = deferred.map((o) => o.address);
      this.scheduler.defer(unit, decision.at, now);
      env.attempts = Math.max(env.attempts, unit.attempts);
      env.nextAttemptAt = decision.at;
      await this.maybeSendDelayNotice(record, now);
      await this.saveState(record);
      return;
    }
    this.scheduler.complete(unit);
    record.openUnits--;
    if (record.openUnits > 0) await this.saveState(record);
    else await this.finish(record);
  }

  /** The provider (or lone destination) said it is limiting us: all its mail waits, not just this message. */
  private throttle(classified: Classified, reply: string, now: number): void {
    const backoff = this.settings.providers?.find((p) => p.name === classified.group)?.throttleBackoff ?? 300;
    const until = now + backoff * 1000;
    this.scheduler.pauseGroup(classified.group, until, now);
    this.deps.log.warn({ event: 'provider_throttled', provider: classified.group, until: new Date(until).toISOString(), reply }, `${classified.group} is throttling: its mail waits ${backoff} s`);
  }

  private saveState(record: MessageRecord): Promise<void> {
    record.saving = record.saving
      .then(() => this.deps.spool.saveState(record.entry))
      .catch((err) => this.deps.log.warn({ err, queueId: record.entry.envelope.id }, 'could not record delivery progress; a retry may repeat a delivery'));
    return record.saving;
  }

  /** Every recipient has a final outcome: one DSN for the failed ones, then the message leaves the spool. */
  private async finish(record: MessageRecord): Promise<void> {
    const env = record.entry.envelope;
    const failed = env.recipients.filter((r) => r.status === 'failed');
    if (failed.length && mayBounce(env.sender)) {
      const recipients: DsnRecipient[] = failed.map((r) => ({
        address: r.address,
        action: 'failed',
        status: r.statusCode ?? '5.0.0',
        diagnostic: r.lastReply,
        remoteMta: r.remoteMta,
        lastAttempt: new Date(this.now()),
      }));
      // The DSN must be durable before the original may go. If it cannot be stored (a full
      // spool), keep the original with its final statuses and try again in a minute.
      try {
        await this.storeNotice(record, recipients);
      } catch (err) {
        this.deps.log.error({ err, queueId: env.id }, 'could not queue the delivery status notification; will try again in a minute');
        await this.saveState(record);
        setTimeout(() => void this.finish(record), 60_000).unref();
        return;
      }
    }
    await record.saving;
    this.messages.delete(env.id);
    await this.deps.spool.remove(record.entry);
  }

  private async maybeSendDelayNotice(record: MessageRecord, now: number): Promise<void> {
    const env = record.entry.envelope;
    const after = this.settings.delayNoticeAfter;
    if (!after || env.delayNoticeSent || now - env.receivedAt < after * 1000 || !mayBounce(env.sender)) return;
    const willRetryUntil = new Date(env.receivedAt + this.settings.lifetime * 1000);
    const recipients: DsnRecipient[] = env.recipients
      .filter((r) => r.status === 'pending')
      .map((r) => ({ address: r.address, action: 'delayed', status: r.statusCode ?? '4.0.0', diagnostic: r.lastReply, remoteMta: r.remoteMta, lastAttempt: new Date(now), willRetryUntil }));
    try {
      await this.storeNotice(record, recipients);
      env.delayNoticeSent = true;
    } catch (err) {
      this.deps.log.warn({ err, queueId: env.id }, 'could not queue the delay notice; will try after the next attempt');
    }
  }

  private async storeNotice(record: MessageRecord, recipients: DsnRecipient[]): Promise<void> {
    const env = record.entry.envelope;
    const now = this.now();
    const id = newQueueId(now);
    const headers = await this.deps.spool.readBody(record.entry, env.headerLength);
    const body = buildDsn({
      reportingMta: this.settings.hostname,
      queueId: env.id,
      arrivalDate: new Date(env.receivedAt),
      sender: env.sender,
      recipients,
      originalHeaders: headers,
      now: new Date(now),
      messageId: `<${id}.dsn@${this.settings.hostname}>`,
    });
    const notice: Envelope = {
      id,
      sender: '',
      recipients: [{ address: env.sender, status: 'pending' }],
      receivedAt: now,
      listener: 'internal',
      client: 'dsn',
      messageId: `<${id}.dsn@${this.settings.hostname}>`,
      headerLength: body.indexOf('\r\n\r\n') + 4,
      attempts: 0,
      nextAttemptAt: now,
    };
    const entry = await this.deps.spool.store(notice, body);
    this.deps.log.info({ event: 'dsn', queueId: id, originalQueueId: env.id, action: recipients[0]?.action, recipients: recipients.length }, 'delivery status notification queued');
    this.enqueue(entry);
  }
}

async function* prepend(first: Buffer, rest: Readable): AsyncGenerator<Buffer> {
  yield first;
  for await (const chunk of rest) yield chunk as Buffer;
}
