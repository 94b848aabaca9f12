/**
 * The queue side of the thread boundary: the queue manager, its spool side and its metrics,
 * driven only by messages (ToQueue), in the worker thread (relay/queue/worker.ts) or in the
 * process's own thread (relay/queue/inline.ts calls receive() directly): the same
 * code either way.
 *
 * Data flows one way. In: the entries intake accepted (and those recovered at the start), the
 * journal segments the writer sealed (and the recovered ones, with their counts, in start),
 * config changes, a stopping peer's events, and questions. Out (FromQueue), besides the spool, logs and metrics: the
 * answers to questions (start, stats, metrics, stop) and the recipients that failed for good
 * (the suppression list lives in the main thread, where intake reads it). Nothing the queue
 * does to a message goes back: its state files, removal, done marks and segment deletion are
 * all done here (relay/spool/delivery.ts).
 */
import { trackingOwners } from '../links/tracking.js';
import { readLinksKey } from '../links/token.js';
import type { Logger } from 'pino';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { RelayConfig } from '../config.js';
import { readBouncesKey, returnPathOwners } from '../bounces/return-path.js';
import { providerTable } from '../delivery/providers.js';
import { createRoute, type Route } from '../delivery/routes.js';
import { DkimSigner } from '../dkim.js';
import type { SegmentCount } from '../spool/journal-format.js';
import type { SegmentSealed } from '../spool/journal-writer.js';
import { QueueMetrics } from '../metrics.js';
import { EventPublisher } from '../events/publisher.js';
import type { RelayEvent } from '../events/event.js';
import { QueueManager, type PermanentFailure, type QueueSettings } from './manager.js';
import { SpoolDelivery, SpoolLayout, type SpoolEntry } from '../spool/spool.js';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** Messages to the queue. */
export type ToQueue =
  | { type: 'enqueue'; entries: SpoolEntry[] }
  | { type: 'sealed'; seal: SegmentSealed }
  | { type: 'start'; segments: SegmentCount[] }
  | { type: 'reconfigure'; config: RelayConfig }
  | { type: 'stop'; deadlineMs: number; id: number }
  | { type: 'stats'; id: number }
  | { type: 'publish'; events: RelayEvent[]; id: number }
  | { type: 'metrics'; id: number };

/** Messages from the queue: answers, and permanent failures for the suppression list. */
export type FromQueue =
  | { type: 'reply'; id: number; value: unknown }
  | { type: 'started' }
  | { type: 'failed'; message: string }
  | { type: 'permanentFailure'; failure: PermanentFailure };

export function queueSettings(c: RelayConfig): QueueSettings {
  return {
    hostname: c.hostname,
    messagesPerConnection: c.delivery.messagesPerConnection,
    maxConnections: c.delivery.maxConnections,
    maxConnectionsPerDestination: c.delivery.maxConnectionsPerDestination,
    minBackoff: c.retry.minBackoff,
    maxBackoff: c.retry.maxBackoff,
    lifetime: c.retry.lifetime,
    delayNoticeAfter: c.retry.delayNoticeAfter,
    idleConnectionTime: c.delivery.idleConnectionTime,
    // Only the mx route reaches providers directly; a smarthost or the outbox is one destination.
    providers: c.delivery.route.type === 'mx' ? providerTable(c.delivery.providers) : [],
    senderDomains: c.senderDomains.map((d) => d.domain),
    returnPaths: returnPathOwners(c.senderDomains),
    returnPathKey: c.bounces ? readBouncesKey(c.bounces.keyFile) : undefined,
    tracking: trackingOwners(c.senderDomains),
    linksKey: c.links ? readLinksKey(c.links.keyFile) : undefined,
  };
}

function routeFor(c: RelayConfig, log: Logger) {
  return createRoute(c.delivery.route, {
    heloName: c.hostname,
    connectTimeoutMs: c.delivery.connectTimeout * 1000,
    responseTimeoutMs: c.delivery.responseTimeout * 1000,
    providers: providerTable(c.delivery.providers),
    tlsPolicy: c.delivery.tlsPolicy,
    log,
  });
}

export class QueueRuntime {
  private readonly manager: QueueManager;
  private readonly spool: SpoolDelivery;
  private readonly metrics: QueueMetrics;
  private readonly events: EventPublisher;
  private config: RelayConfig;

  constructor(
    config: RelayConfig,
    private readonly log: Logger,
    private readonly send: (m: FromQueue) => void,
  ) {
    this.config = config;
    this.spool = new SpoolDelivery(new SpoolLayout(config.spool.dir));
    const ref: { manager?: QueueManager } = {};
    this.metrics = new QueueMetrics(() => ref.manager!.scheduler.stats(Date.now()));
    this.events = new EventPublisher(config.events, { spoolDir: config.spool.dir, registry: this.metrics.registry, log, now: Date.now });
    this.manager = ref.manager = new QueueManager(queueSettings(config), {
      spool: this.spool,
      route: routeFor(config, log),
      log,
      metrics: this.metrics,
      now: Date.now,
      onPermanentFailure: (failure) => send({ type: 'permanentFailure', failure }),
      signer: DkimSigner.fromConfig(config.senderDomains),
      events: this.events,
    });
  }

  receive(m: ToQueue): void {
    switch (m.type) {
      case 'enqueue':
        for (const entry of m.entries) {
          // Across threads, structured clone turns a Buffer into a plain Uint8Array.
          const body = entry.body as Uint8Array | undefined;
          if (body && !Buffer.isBuffer(body)) entry.body = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
          this.manager.enqueue(entry);
        }
        break;
      case 'sealed':
        this.spool.sealed(m.seal);
        break;
      case 'start':
        try {
          this.spool.adopt(m.segments);
          this.manager.start();
          this.send({ type: 'started' });
        } catch (err) {
          this.send({ type: 'failed', message: (err as Error).message });
        }
        break;
      case 'reconfigure':
        this.reconfigure(m.config);
        break;
      case 'stop':
        // Every done mark is written before the answer: the main thread then reads a spool that is up to date.
        // The webhooks go on sending what the last deliveries made until the same deadline.
        void this.manager
          .stop(m.deadlineMs)
          .then(() => this.events.stop(m.deadlineMs))
          .then(() => this.spool.close())
          .then(() => this.send({ type: 'reply', id: m.id, value: this.manager.size }));
        break;
      case 'stats':
        this.send({ type: 'reply', id: m.id, value: this.manager.scheduler.stats(Date.now()) });
        break;
      case 'publish':
        // A stopping peer's events (relay/events/handoff.ts): answered once they are in the outbox.
        this.send({ type: 'reply', id: m.id, value: this.events.enabled ? (this.events.publish(m.events), m.events.length) : 0 });
        break;
      case 'metrics':
        void this.metrics.registry.getMetricsAsJSON().then((value) => this.send({ type: 'reply', id: m.id, value }));
        break;
    }
  }

  private reconfigure(config: RelayConfig): void {
    const routeChanged = JSON.stringify(config.delivery) !== JSON.stringify(this.config.delivery);
    this.config = config;
    this.manager.reconfigure(queueSettings(config), routeChanged ? this.routeFor(config) : undefined, this.signerFor(config));
    this.events.reconfigure(config.events);
  }

  /** The new route; one that cannot be made (a CA file gone since the main thread checked) keeps the old. */
  private routeFor(config: RelayConfig): Route | undefined {
    try {
      return routeFor(config, this.log);
    } catch (err) {
      this.log.error({ err }, 'the new delivery route could not be set up; delivery goes on with the previous one');
      return undefined;
    }
  }

  /** New keys on reload; keys that vanished since the main thread checked them keep the old signer. */
  private signerFor(config: RelayConfig): DkimSigner | undefined {
    try {
      return DkimSigner.fromConfig(config.senderDomains);
    } catch (err) {
      this.log.error({ err }, 'DKIM keys could not be loaded; signing goes on with the previous keys');
      return undefined;
    }
  }
}
