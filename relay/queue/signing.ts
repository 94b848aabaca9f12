/**
 * The bytes that leave: a message's DKIM signature, made once before its first attempt and
 * kept in its state (units to several destinations share it; a retry reuses it), put in
 * front of the body as it goes out.
 */
import { Readable } from 'node:stream';
import type { OutboundMessage } from '../delivery/routes.js';
import type { DkimSigner } from '../dkim.js';
import type { QueueMetrics } from '../metrics.js';
import type { Spool, SpoolEntry } from '../spool/spool.js';

/** The signature being made for a message, so concurrent units wait for one signing. */
export type SigningSlot = { signing?: Promise<string> };

/** The message's DKIM header fields ('' when no key covers it); a failure rejects, and the next call tries again. */
export function signatureOf(entry: SpoolEntry, slot: SigningSlot, signer: DkimSigner | undefined, spool: Spool, metrics: QueueMetrics): Promise<string> {
  const env = entry.envelope;
  if (env.dkimSignature !== undefined) return Promise.resolve(env.dkimSignature);
  if (!signer || signer.empty) return Promise.resolve('');
  slot.signing ??= signer.sign(spool.openBody(entry), env.headerLength).then(
    (signed) => {
      env.dkimSignature = signed?.headers ?? '';
      if (signed) for (const algorithm of signed.algorithms) metrics.dkimSignatures.inc({ domain: signed.domain, algorithm });
      return env.dkimSignature;
    },
    (err: unknown) => {
      slot.signing = undefined;
      throw err;
    },
  );
  return slot.signing;
}

/** One unit's message as the route sends it: from its envelope sender (a return path, or the sender's own), the signature, then the body from memory or the spool. */
export function outbound(entry: SpoolEntry, recipients: string[], signature: string, spool: Spool, sender = entry.envelope.sender): OutboundMessage {
  return {
    id: entry.envelope.id,
    sender,
    recipients,
    size: entry.bodyLength + Buffer.byteLength(signature),
    eightBit: entry.envelope.eightBit,
    body: () => {
      // A Buffer spares nodemailer a stream and a pipe for every message.
      if (entry.body) return signature ? Buffer.concat([Buffer.from(signature), entry.body]) : entry.body;
      return signature ? Readable.from(prepend(Buffer.from(signature), spool.openBody(entry))) : spool.openBody(entry);
    },
  };
}

async function* prepend(first: Buffer, rest: Readable): AsyncGenerator<Buffer> {
  yield first;
  for await (const chunk of rest) yield chunk as Buffer;
}
