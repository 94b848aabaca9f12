/**
 * The events' side of the queue thread: the outbox in the spool and one sender per webhook.
 * The queue manager hands it the events it made (relay/events/event.ts) at the moment it
 * decided them, before it records its own progress; they are appended at once, and the
 * webhooks are woken. Without a webhook nothing is made or written.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type client from 'prom-client';
import type { EventsConfig } from './config.js';
import type { RelayEvent } from './event.js';
import { EventMetrics } from './metrics.js';
import { EVENTS_DIR, EventOutbox } from './outbox.js';
import { readSigningKeys } from './signature.js';
import { WebhookSender } from './webhook.js';

const USER_AGENT = 'mailfleet-relay (+https://github.com/mailfleet/mailfleet/blob/main/docs/events.md)';

export interface PublisherDeps {
  spoolDir: string;
  registry: client.Registry;
  log: Logger;
  now: () => number;
}

export class EventPublisher {
  private outbox: EventOutbox | undefined;
  private readonly senders = new Map<string, WebhookSender>();
  private readonly metrics: EventMetrics;

  constructor(
    config: EventsConfig,
    private readonly deps: PublisherDeps,
  ) {
    this.metrics = new EventMetrics(deps.registry, () =>
      [...this.senders.values()].map((s) => ({ name: s.name, backlog: this.outbox?.backlog(s.name) ?? 0, oldestAgeSeconds: s.oldestAgeSeconds(deps.now()) })),
    );
    this.reconfigure(config);
  }

  /** Whether any webhook wants events: the queue makes none otherwise. */
  get enabled(): boolean {
    return this.senders.size > 0;
  }

  publish(events: readonly RelayEvent[]): void {
    if (!this.outbox || !events.length) return;
    this.outbox.append(events);
    this.metrics.counted(events);
    for (const s of this.senders.values()) s.wake();
  }

  /** Webhooks added, changed or removed (config reload); a removed webhook's place in the outbox is forgotten. */
  reconfigure(config: EventsConfig): void {
    const names = config.webhooks.map((w) => w.name);
    if (this.outbox) {
      this.outbox.setWebhooks(names);
      this.outbox.setMaxBytes(config.maxOutboxBytes);
    } else if (names.length) {
      this.outbox = this.openOutbox(names, config.maxOutboxBytes);
    }
    const wanted = new Map(config.webhooks.map((w) => [w.name, w]));
    for (const [name, sender] of this.senders) {
      const w = wanted.get(name);
      // A new address is a new connection: the sender starts afresh at the same place in the outbox.
      if (w && w.url === sender.config.url && w.caFile === sender.config.caFile) continue;
      void sender.stop(this.deps.now());
      this.senders.delete(name);
    }
    for (const w of config.webhooks) {
      let keys;
      try {
        keys = readSigningKeys(w);
      } catch (err) {
        // The main thread checked the files before this reload; one gone since keeps the webhook's old keys.
        this.deps.log.error({ err, webhook: w.name }, 'webhook signing keys could not be read; the webhook keeps its previous keys');
        continue;
      }
      const existing = this.senders.get(w.name);
      if (existing) {
        existing.update(w, keys);
        continue;
      }
      const sender = new WebhookSender(w, keys, { outbox: this.outbox!, metrics: this.metrics, log: this.deps.log, now: this.deps.now, userAgent: USER_AGENT });
      this.senders.set(w.name, sender);
      sender.start();
    }
  }

  /** Sends what it can until the deadline (the drain), then closes the outbox: what is left waits for the next start. */
  async stop(deadlineMs: number): Promise<void> {
    await Promise.all([...this.senders.values()].map((s) => s.stop(deadlineMs)));
    this.senders.clear();
    this.outbox?.close();
  }

  private openOutbox(names: string[], maxBytes: number): EventOutbox {
    return EventOutbox.open(path.join(this.deps.spoolDir, EVENTS_DIR), names, {
      maxBytes,
      onDropped: (webhook, n) => {
        this.metrics.dropped.inc({ webhook }, n);
        this.deps.log.warn({ event: 'events_dropped', webhook, events: n, maxOutboxBytes: maxBytes }, `the events outbox is full: ${n} event(s) for webhook ${webhook} dropped`);
      },
      onError: (err) => this.deps.log.error({ err }, 'the events outbox could not be written'),
    });
  }
}
