/**
 * The bytes that leave: a message's DKIM signature, made once before its first attempt and
 * kept in its state (units to several destinations share it; a retry reuses it), put in
 * front of the body as it goes out. A tracked message (relay/links/tracking.ts) is rewritten
 * first and signed as rewritten; both stay in memory with the message and are made again
 * after a restart (the rewrite is the same for the same config), never kept in its state: a
 * signature kept across a config change would no longer match a body made again.
 */
import { Readable } from 'node:stream';
import type { OutboundMessage } from '../delivery/routes.js';
import type { DkimSigner } from '../dkim.js';
import type { RewritePlan } from '../links/rewrite.js';
import type { QueueMetrics } from '../metrics.js';
import type { DeliverySpool, SpoolEntry } from '../spool/spool.js';

/** What goes in front of the body ('' when no key covers it), and the rewritten message when it was tracked. */
export interface Outgoing {
  signature: string;
  body?: Buffer;
}

/** The signature being made for a message, so concurrent units wait for one signing. */
export type SigningSlot = { signing?: Promise<Outgoing> };

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The message's outgoing form; a failure rejects, and the next call tries again. */
export function outgoingOf(entry: SpoolEntry, slot: SigningSlot, signer: DkimSigner | undefined, spool: DeliverySpool, metrics: QueueMetrics, tracking?: RewritePlan): Promise<Outgoing> {
  const env = entry.envelope;
  if (!tracking && env.dkimSignature !== undefined) return Promise.resolve({ signature: env.dkimSignature });
  if (!tracking && (!signer || signer.empty)) return Promise.resolve({ signature: '' });
  slot.signing ??= (async (): Promise<Outgoing> => {
    let body: Buffer | undefined;
    if (tracking) {
      // Loaded with the first tracked message: loaded at start, mailsplit and parse5 took the bench's
      // peak RSS from 158 to 171 MiB in a relay that tracks nothing.
      const { rewriteMessage } = await import('../links/rewrite.js');
      const rewritten = await rewriteMessage(entry.body ?? (await readAll(spool.openBody(entry))), tracking);
      metrics.trackedMessages.inc({ result: rewritten.links || rewritten.pixel ? 'rewritten' : 'unchanged' });
      body = rewritten.message;
    }
    const signed = signer && !signer.empty ? await signer.sign(body ? Readable.from([body]) : spool.openBody(entry), env.headerLength) : undefined;
    if (signed) for (const algorithm of signed.algorithms) metrics.dkimSignatures.inc({ domain: signed.domain, algorithm });
    if (!body) env.dkimSignature = signed?.headers ?? '';
    return { signature: signed?.headers ?? '', ...(body ? { body } : {}) };
  })().catch((err: unknown) => {
    slot.signing = undefined;
    throw err;
  });
  return slot.signing;
}

/** One unit's message as the route sends it: from its envelope sender (a return path, or the sender's own), the signature, then the body (rewritten, from memory or the spool). */
export function outbound(entry: SpoolEntry, recipients: string[], out: Outgoing, spool: DeliverySpool, sender = entry.envelope.sender): OutboundMessage {
  const signature = out.signature;
  const body = out.body ?? entry.body;
  return {
    id: entry.envelope.id,
    sender,
    recipients,
    size: (out.body?.length ?? entry.bodyLength) + Buffer.byteLength(signature),
    eightBit: entry.envelope.eightBit,
    body: () => {
      // A Buffer spares nodemailer a stream and a pipe for every message.
      if (body) return signature ? Buffer.concat([Buffer.from(signature), body]) : body;
      return signature ? Readable.from(prepend(Buffer.from(signature), spool.openBody(entry))) : spool.openBody(entry);
    },
  };
}

async function* prepend(first: Buffer, rest: Readable): AsyncGenerator<Buffer> {
  yield first;
  for await (const chunk of rest) yield chunk as Buffer;
}
