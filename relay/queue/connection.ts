/**
 * One outbound connection's life (Postfix's qmgr_deliver and the smtp client's session):
 * connect to a destination, carry ready units over it one after another (signing each
 * message first), wait a moment for more when idle, and hand every attempt's outcomes to the
 * settle step. A destination that cannot be reached fails the units ready for it at once,
 * without a connection each.
 */
import type { Logger } from 'pino';
import { DeliveryFailure, type RecipientOutcome } from '../delivery/outcome.js';
import { SmarthostAuthFailure } from '../delivery/smarthost-auth.js';
import type { Route, RouteSession } from '../delivery/routes.js';
import type { QueueMetrics } from '../metrics.js';
import type { DeliverySpool, SpoolEntry } from '../spool/spool.js';
import type { IdleConnections } from './idle.js';
import type { Scheduler, Unit } from './scheduler.js';
import { outbound, type Outgoing, type SigningSlot } from './signing.js';

/** What a connection needs of the queue manager that runs it. */
export interface ConnectionHost {
  readonly scheduler: Scheduler;
  readonly idle: IdleConnections;
  readonly spool: DeliverySpool;
  readonly metrics: QueueMetrics;
  readonly log: Logger;
  /** Open sessions, closed at stop. */
  readonly sessions: Set<RouteSession>;
  now(): number;
  /** False once the relay is stopping: no more units go out. */
  running(): boolean;
  settings(): { messagesPerConnection: number; idleConnectionTime: number };
  message(id: string): (SigningSlot & { entry: SpoolEntry }) | undefined;
  sign(record: SigningSlot & { entry: SpoolEntry }): Promise<Outgoing>;
  /** The envelope sender the message goes out with (its return path, when its sender domain has one). */
  envelopeSender(entry: SpoolEntry): string;
  /** `interrupted`: the relay's own stop cut this attempt short. */
  settle(unit: Unit, outcomes: RecipientOutcome[], destination: string, interrupted?: boolean): Promise<void>;
  /** A connection slot was freed, or outcomes changed what is ready: open what may open now. */
  pump(): void;
}

export async function runConnection(host: ConnectionHost, route: Route, destination: string): Promise<void> {
  const { scheduler } = host;
  let session: RouteSession;
  try {
    session = await route.connect(destination);
    if (route.name === 'smarthost') host.metrics.smarthostAuth();
  } catch (err) {
    if (err instanceof SmarthostAuthFailure) {
      host.metrics.smarthostAuth(err.reason);
      host.log.warn({ event: 'smarthost_auth_failed', reason: err.reason, detail: err.detail }, 'smarthost authentication failed');
    }
    await failDestination(host, destination, err);
    return;
  }
  host.sessions.add(session);
  try {
    for (let sent = 0; sent < host.settings().messagesPerConnection && session.usable && host.running(); sent++) {
      const unit = scheduler.take(destination, host.now());
      if (!unit) {
        if (host.running() && (await host.idle.wait(destination, host.settings().idleConnectionTime))) {
          sent--;
          continue;
        }
        break;
      }
      const record = host.message(unit.messageId);
      if (!record) {
        scheduler.complete(unit);
        continue;
      }
      let signature: Outgoing;
      try {
        signature = await host.sign(record);
      } catch (err) {
        // Never unsigned: the message waits, and the log says which key failed.
        host.log.error({ err, queueId: unit.messageId }, 'DKIM signing failed');
        await host.settle(unit, new DeliveryFailure('deferred', '4.3.0', `DKIM signing failed, the message waits rather than leave unsigned: ${(err as Error).message}`).forRecipients(unit.recipients), destination);
        continue;
      }
      const started = process.hrtime.bigint();
      let outcomes: RecipientOutcome[];
      try {
        outcomes = await session.deliver(outbound(record.entry, unit.recipients, signature, host.spool, host.envelopeSender(record.entry)));
      } catch (err) {
        // A local failure (the outbox disk is full, the body cannot be read): try again later.
        outcomes = new DeliveryFailure('deferred', '4.3.0', `local error while delivering: ${(err as Error).message}`).forRecipients(unit.recipients);
        await host.settle(unit, outcomes, destination, !host.running());
        break;
      }
      host.metrics.attemptSeconds.observe({ route: route.name }, Number(process.hrtime.bigint() - started) / 1e9);
      await host.settle(unit, outcomes, destination, !host.running());
    }
  } finally {
    // The slot is free only once the connection is closed: until then the peer counts it.
    await session.close();
    host.sessions.delete(session);
    scheduler.closeConnection(destination, host.now());
    host.pump();
  }
}

/**
 * A dead destination: every unit ready for it now shares the outcome, without a connection
 * each. But while other connections to it work (a 421 on the twentieth connection), only the
 * one unit this connection would have carried pays for the failure.
 */
async function failDestination(host: ConnectionHost, destination: string, err: unknown): Promise<void> {
  const { scheduler } = host;
  const failure = err instanceof DeliveryFailure ? err : new DeliveryFailure('deferred', '4.4.2', `cannot deliver: ${(err as Error).message}`);
  const others = scheduler.connectionsTo(destination) - 1;
  const one = others > 0 ? scheduler.take(destination, host.now()) : undefined;
  const units = others > 0 ? (one ? [one] : []) : scheduler.drainDestination(destination);
  scheduler.closeConnection(destination, host.now());
  await Promise.all(units.map((u) => host.settle(u, failure.forRecipients(u.recipients), destination)));
  host.pump();
}
