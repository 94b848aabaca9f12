/** The events' metrics (docs/metrics.md), in the queue thread's registry: the queue makes the events and its webhooks send them. */
import client from 'prom-client';
import type { EventType } from './event.js';

const PREFIX = 'mailfleet_relay_';

export interface WebhookGauges {
  name: string;
  backlog: number;
  oldestAgeSeconds: number;
}

export class EventMetrics {
  readonly events: client.Counter<'type'>;
  readonly requests: client.Counter<'webhook' | 'result'>;
  readonly sent: client.Counter<'webhook'>;
  readonly dropped: client.Counter<'webhook'>;

  constructor(registry: client.Registry, webhooks: () => WebhookGauges[]) {
    const registers = [registry];
    this.events = new client.Counter({ name: `${PREFIX}events_total`, help: 'Events written to the outbox for webhooks, by type (none are written without a webhook).', labelNames: ['type'], registers });
    this.requests = new client.Counter({
      name: `${PREFIX}webhook_requests_total`,
      help: 'Batches POSTed to each webhook, by result: ok (2xx), http_error (any other status), timeout, unreachable (connection or TLS failed). Failed batches are sent again.',
      labelNames: ['webhook', 'result'],
      registers,
    });
    this.sent = new client.Counter({ name: `${PREFIX}webhook_events_sent_total`, help: 'Events a webhook took (answered 2xx).', labelNames: ['webhook'], registers });
    this.dropped = new client.Counter({ name: `${PREFIX}webhook_events_dropped_total`, help: 'Events a webhook never got: dropped from a full outbox (events.maxOutboxBytes) or not written.', labelNames: ['webhook'], registers });
    new client.Gauge({
      name: `${PREFIX}webhook_backlog_events`,
      help: 'Events in the outbox that a webhook has not taken yet.',
      labelNames: ['webhook'],
      registers,
      collect() {
        this.reset();
        for (const w of webhooks()) this.set({ webhook: w.name }, w.backlog);
      },
    });
    new client.Gauge({
      name: `${PREFIX}webhook_oldest_event_age_seconds`,
      help: 'How long the oldest event a webhook has not taken has waited; 0 when it has taken everything.',
      labelNames: ['webhook'],
      registers,
      collect() {
        this.reset();
        for (const w of webhooks()) this.set({ webhook: w.name }, w.oldestAgeSeconds);
      },
    });
  }

  counted(events: readonly { type: EventType }[]): void {
    for (const e of events) this.events.inc({ type: e.type });
  }
}
