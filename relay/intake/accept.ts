/**
 * The end of DATA: the message streamed into the spool (data.ts), the sender policy applied to
 * a logged-in user's header, its envelope made, and 250 answered only once the spool holds
 * the message (RFC 5321 6.1); then it is handed to the queue. Whatever went wrong, nothing
 * unacknowledged is kept.
 */
import type { Readable } from 'node:stream';
import type { Session } from './smtp/session.js';
import { refusal, SmtpRefusal } from '../refusals.js';
import type { Envelope, RecipientState, SpoolWriter } from '../spool/spool.js';
import { describeSuppression } from '../suppression.js';
import type { HeaderFacts } from '../headers.js';
import { unsubscribeFields } from '../links/unsubscribe.js';
import { receiveBody, traceInfo, type ReceivedHeader } from './data.js';
import type { IntakeDeps } from './deps.js';
import { headerSenderRefusal } from './sender-policy.js';
import { sessionUser, type RcptAddress } from './session.js';

type DataCallback = (err?: Error | null, message?: string) => void;

/** A recipient as stored: pending, or failed at once when it is suppressed with action `bounce` (RCPT marked it). */
export function recipientState(r: RcptAddress): RecipientState {
  if (!r.suppressed) return { address: r.address, status: 'pending' };
  return { address: r.address, status: 'failed', statusCode: '5.1.1', lastReply: `${describeSuppression(r.suppressed)}; not attempted` };
}

/** The BODY parameter of MAIL FROM (RFC 6152), upper-cased; '' when absent. */
export function bodyType(session: Session): string {
  const from = session.envelope.mailFrom;
  const args = from ? (from as { args?: Record<string, unknown> }).args : undefined;
  return String(args?.BODY ?? '').toUpperCase();
}

/** A received message's envelope (pure): due for its first attempt at once. */
export function envelopeFor(session: Session, m: { id: string; listener: string; header: ReceivedHeader; now: number }): Envelope {
  return {
    id: m.id,
    sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
    recipients: session.envelope.rcptTo.map(recipientState),
    receivedAt: m.now,
    listener: m.listener,
    client: session.remoteAddress,
    user: sessionUser(session),
    messageId: m.header.messageId,
    eightBit: bodyType(session) === '8BITMIME' || undefined,
    headerLength: m.header.length,
    tags: m.header.tags,
    metadata: m.header.metadata,
    attempts: 0,
    nextAttemptAt: m.now,
  };
}

/** The List-Unsubscribe fields this message gets ('' for none), counted by what was decided. */
function unsubscribeFor(session: Session, queueId: string, facts: HeaderFacts, deps: IntakeDeps): string {
  const policy = deps.policy();
  if (!policy.unsubscribe.length) return '';
  const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
  const decided = unsubscribeFields({ sender, recipients: session.envelope.rcptTo.map((r) => r.address), queueId, hasListUnsubscribe: !!facts.hasListUnsubscribe }, policy.unsubscribe, policy.linksKey);
  if ('skip' in decided) {
    if (decided.skip !== 'not_configured') deps.metrics.unsubscribeHeaders.inc({ result: decided.skip });
    return '';
  }
  deps.metrics.unsubscribeHeaders.inc({ result: 'added' });
  return decided.add;
}

/**
 * The engine's onData for one listener: answers 250 with the queue id once the message is
 * durable, or refuses through `reject` (which counts and logs the refusal).
 */
export function acceptMessage(
  stream: Readable & { sizeExceeded?: boolean },
  session: Session,
  cb: DataCallback,
  listener: string,
  deps: IntakeDeps,
  reject: (err: SmtpRefusal, session: Session, cb: DataCallback) => void,
): void {
  const { config } = deps.policy();
  const started = process.hrtime.bigint();
  let writer: SpoolWriter | undefined;
  const fail = (err: unknown) => {
    void writer?.abort().catch((e: unknown) => deps.log.warn({ err: e }, 'could not remove an unacknowledged spool file'));
    if (err instanceof SmtpRefusal) return reject(err, session, cb);
    if ((err as { code?: string }).code === 'ECONNECTION') {
      // The client hung up before the final dot: nothing was acknowledged, nothing is kept, and it is not our failure.
      deps.log.info({ event: 'client_disconnected', listener, session: session.id, client: session.remoteAddress, user: session.user }, 'client hung up during DATA; nothing kept');
      return cb(err as Error);
    }
    deps.log.error({ err, session: session.id }, 'could not store message');
    reject(refusal('storeFailed'), session, cb);
  };
  (async () => {
    const w = deps.spool.createWriter();
    writer = w;
    const header = await receiveBody(
      stream,
      w,
      config.limits.maxHeaderSize,
      () => traceInfo(session, w.id, deps.policy().config.hostname, new Date()),
      (facts) => unsubscribeFor(session, w.id, facts, deps),
    );
    if (stream.sizeExceeded) throw refusal('tooBig', { limit: config.limits.maxMessageSize });
    const user = sessionUser(session);
    if (user) {
      const refused = headerSenderRefusal(config, user, header);
      if (refused) throw refused;
    }
    const envelope = envelopeFor(session, { id: w.id, listener, header, now: Date.now() });
    // Small mail goes to the journal (group commit), large mail to a file of its own.
    const entry = await w.keep(envelope);
    deps.metrics.spoolWriteSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    deps.metrics.received.inc({ listener });
    const suppressed = envelope.recipients.filter((r) => r.status === 'failed').length;
    if (suppressed) deps.metrics.suppressionRefusals.inc({ action: 'bounce' }, suppressed);
    deps.log.info(
      { event: 'received', queueId: w.id, messageId: header.messageId, listener, client: session.remoteAddress, user, size: entry.bodyLength, recipients: envelope.recipients.length, suppressed: suppressed || undefined },
      'received',
    );
    deps.accepted(entry);
    cb(null, `2.0.0 Ok: queued as ${w.id}`);
  })().catch(fail);
}
