/**
 * What intake needs from the rest of the relay (IntakeDeps) and what it reads on every session
 * (IntakePolicy, replaced whole on a config reload): the one seam between the listeners and
 * the spool, the queue and the suppression list.
 */
import type { Logger } from 'pino';
import type { RelayConfig } from '../config.js';
import type { RelayEvent } from '../events/event.js';
import type { UnsubscribeOwner } from '../links/unsubscribe.js';
import type { IntakeMetrics } from '../metrics.js';
import type { IntakeSpool, SpoolEntry } from '../spool/spool.js';
import type { SuppressionList } from '../suppression.js';
import type { UserStore } from '../users.js';

/** What intake reads on every session: replaced whole on a config reload. */
export interface IntakePolicy {
  config: RelayConfig;
  users: UserStore;
  tls?: { key: Buffer; cert: Buffer };
  /** The fleet's return path key (bounces.keyFile), read with the rest. */
  bouncesKey?: string;
  /** The fleet's link key (links.keyFile), and the sender domains with one-click unsubscribe. */
  linksKey?: string;
  unsubscribe: UnsubscribeOwner[];
}

export interface IntakeDeps {
  spool: IntakeSpool;
  metrics: IntakeMetrics;
  log: Logger;
  policy: () => IntakePolicy;
  /** Hands a durable message to the queue. */
  accepted: (entry: SpoolEntry) => void;
  /** Whether new mail may be accepted now (false while draining). */
  accepting: () => boolean;
  /** Recipients that hard-bounced, per sender domain: refused, or accepted and bounced at once (suppression.action). */
  suppressions: SuppressionList;
  /** Puts events in the queue's outbox (a `bounces` listener's reports); resolves with how many were taken. */
  publish: (events: RelayEvent[]) => Promise<number>;
}
