/**
 * Delivery status notifications out of the queue (Postfix's bounce daemon): a report built
 * from the original's headers and its recipients' outcomes (relay/bounce.ts), stored in the
 * spool like any message to the original sender, with the null sender so it never bounces
 * in turn. What is due comes from the settle step (settle.ts); this only writes.
 */
import { buildDsn, type DsnRecipient } from '../bounce.js';
import type { Envelope } from '../envelope.js';
import { newQueueId, type DeliverySpool, type SpoolEntry } from '../spool/spool.js';

/** The listener name a notice's envelope carries: what tells the relay's own mail from the senders'. */
export const NOTICE_LISTENER = 'internal';

/** A notice the relay wrote itself (a DSN or a delay notice), not mail a sender submitted. */
export function isNotice(env: Pick<Envelope, 'listener'>): boolean {
  return env.listener === NOTICE_LISTENER;
}

/** Stores the notice; resolves with its spool entry once it is durable. */
export async function storeNotice(spool: DeliverySpool, hostname: string, original: SpoolEntry, recipients: DsnRecipient[], now: number): Promise<SpoolEntry> {
  const env = original.envelope;
  const id = newQueueId(now);
  const messageId = `<${id}.dsn@${hostname}>`;
  const body = buildDsn({
    reportingMta: hostname,
    queueId: env.id,
    arrivalDate: new Date(env.receivedAt),
    sender: env.sender,
    recipients,
    originalHeaders: await spool.readBody(original, env.headerLength),
    now: new Date(now),
    messageId,
  });
  const notice: Envelope = {
    id,
    sender: '',
    recipients: [{ address: env.sender, status: 'pending' }],
    receivedAt: now,
    listener: NOTICE_LISTENER,
    client: 'dsn',
    messageId,
    headerLength: body.indexOf('\r\n\r\n') + 4,
    attempts: 0,
    nextAttemptAt: now,
  };
  return spool.store(notice, body);
}
