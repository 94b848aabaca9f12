/**
 * The relay's drain on SIGTERM: no new mail, open sessions finish their transaction, delivery
 * goes on until the deadline (shutdown.drainTimeout) or, with a fleet to hand to, until
 * handoff.window before it, and what is left goes to a peer (relay/handoff.ts; then the events
 * the webhooks have not taken, relay/events/handoff.ts) or stays in the spool, intact, for the
 * next start. Ends with every file closed and the spool lock released.
 */
import type http from 'node:http';
import type { Logger } from 'pino';
import type { RelayConfig } from './config.js';
import { handOffEvents } from './events/handoff.js';
import { findPeers, handOffSpool, readToken } from './handoff.js';
import type { ListenerSet } from './listeners.js';
import type { IntakeMetrics } from './metrics.js';
import type { QueueHandle } from './queue/client.js';
import type { SpoolIntake } from './spool/spool.js';
import type { SpoolLock } from './spool/lock.js';
import type { SuppressionList } from './suppression.js';

export interface DrainDeps {
  config: RelayConfig;
  listeners: ListenerSet;
  queue: QueueHandle;
  /** Handoffs from peers being stored now: they are waited for before the spool is handed on. */
  receiving: () => number;
  /** The writer side: closed once the queue has stopped. */
  spool: SpoolIntake;
  suppressions: SuppressionList;
  lock: SpoolLock;
  httpServer: http.Server;
  /** The links endpoint (unsubscribe): closed with the listeners, so its Service sends people to a pod that stays. */
  linksServer?: http.Server;
  /** Sends the suppression list entries not yet shared with the peers. */
  shareSuppressions?: () => Promise<void>;
  metrics: IntakeMetrics;
  log: Logger;
}

/** How long answers under way on the HTTP port may take at the end of a drain. */
const HTTP_CLOSE_GRACE_MS = 1000;

export async function drain(d: DrainDeps): Promise<void> {
  const { log, metrics } = d;
  const deadline = Date.now() + d.config.shutdown.drainTimeout * 1000;
  // Stop listening before saying so: whoever reads the log line may connect next.
  d.listeners.stopListening();
  d.linksServer?.close();
  d.linksServer?.closeIdleConnections();
  log.info({ event: 'draining', deadline: new Date(deadline).toISOString() }, 'stopping: no new mail, open sessions finish, delivering until the deadline');
  // Sessions get at most half the drain time to finish; delivery gets the rest.
  await d.listeners.drain(Date.now() + (deadline - Date.now()) / 2);
  // With a fleet to hand to, delivery stops early enough to hand the rest over in time.
  const handoff = d.config.handoff;
  const token = await readToken(handoff.tokenFile);
  const peers = token ? await findPeers(handoff).catch(() => []) : [];
  const handingOff = !!token && peers.length > 0;
  let left = await d.queue.stop(handingOff ? deadline - handoff.window * 1000 : deadline);
  // A peer's message that passed the accepting check before the drain began is stored first.
  while (d.receiving() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  // The writer side finishes its last journal write; nothing is appended after this.
  await d.spool.close();
  if (handingOff) {
    const result = await handOffSpool({ dir: d.spool.layout.dir, peers, token: token!, deadline, log, sent: () => metrics.handoffMessages.inc({ direction: 'sent' }) });
    metrics.handoffMessages.inc({ direction: 'left' }, result.left);
    log.info({ event: 'handoff', handed: result.handed, left: result.left, peers }, `handed ${result.handed} message(s) to peers; ${result.left} stay`);
    left = result.left;
    const webhooks = d.config.events.webhooks.map((w) => w.name);
    if (webhooks.length) {
      const events = await handOffEvents({ spoolDir: d.spool.layout.dir, webhooks, peers, token: token!, deadline, log });
      if (events.handed || events.left) log.info({ event: 'events_handoff', handed: events.handed, left: events.left }, `handed ${events.handed} event(s) the webhooks had not taken to peers; ${events.left} stay`);
    }
  } else if (token && left !== 0) {
    log.warn({ event: 'handoff', handed: 0, left, peers: [] }, 'no peer to hand the remaining mail to: it stays in the spool');
  }
  // After the queue: its last bounces still go on the list, and to the peers.
  await d.shareSuppressions?.();
  await d.suppressions.close();
  await d.lock.release();
  // Answers under way get a moment, no more: a client that never gives up (a scrape without a
  // timeout, a peer's handoff still sending) must not hold the stop.
  const httpClosed = new Promise<void>((r) => d.httpServer.close(() => r()));
  d.httpServer.closeIdleConnections();
  await Promise.race([httpClosed, new Promise((r) => setTimeout(r, HTTP_CLOSE_GRACE_MS).unref())]);
  d.httpServer.closeAllConnections();
  const leftText = Number.isNaN(left) ? 'the queue worker had stopped; every undelivered message stays' : `${left} message(s) stay`;
  log.info({ event: 'stopped', leftInSpool: Number.isNaN(left) ? null : left }, `stopped; ${leftText} in the spool for the next start`);
}
