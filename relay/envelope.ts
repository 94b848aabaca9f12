/**
 * A message's envelope as one schema: the spool's Envelope and RecipientState types derive
 * from it, and the handoff envelope (relay/handoff.ts: what a peer relay sends with a message
 * it hands over) is the same fields less the queue id, plus the sender's queue id. A handoff
 * envelope is checked whole before the message is stored here, because a value that slips
 * through lives on in this relay's spool and scheduler: a due time that is not a number once
 * sat at the root of the scheduler's heap and stopped every retry, a CR/LF in an address or in
 * the DKIM field would smuggle lines into the message sent on.
 */
import { z } from 'zod';

/** Upper bound on a time (ms since epoch): the largest a Date can hold. */
const MAX_TIME = 8.64e15;
/** Longer than any SMTP path (RFC 5321 4.5.3.1.3: 256 octets) or command line a client can send. */
const MAX_ADDRESS = 1000;
/** A recipient's last reply: a multi-line SMTP reply is joined with newlines (DSNs make it one line). */
const MAX_REPLY = 8192;
/** More than any relay takes in one message (limits.maxRecipients), DSNs included. */
export const MAX_RECIPIENTS = 10_000;
/** One DKIM-Signature field per key of the signing domain: a few at most. */
const MAX_SIGNATURES = 8;
const MAX_SIGNATURE_BYTES = 64 * 1024;
/** An application's tags and metadata travel on every event: bounded like SendGrid's categories and Mailgun's variables. */
export const MAX_TAGS = 10;
export const MAX_TAG = 128;
export const MAX_METADATA_KEYS = 20;
export const MAX_METADATA_VALUE = 1000;

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex
const NUL = /\u0000/;

/** Text that goes into a command or a header line: no CR, LF, NUL or other control characters. */
const line = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !CONTROL.test(s), 'must not contain CR, LF, NUL or other control characters');

/** ms since epoch; a retry time carries the jitter's fraction of a millisecond. z.number() refuses NaN and Infinity. */
const time = z.number().min(0).max(MAX_TIME);

/**
 * One or more complete DKIM-Signature header fields (one per key of the signing domain), each
 * ending in CRLF, folded only with CRLF followed by white space, printable ASCII otherwise:
 * nothing that a receiver would read as another header field or the end of the header.
 */
const DKIM_FIELDS = /^(?:DKIM-Signature:[\x20-\x7e\t]*(?:\r\n[ \t]+[\x21-\x7e][\x20-\x7e\t]*)*\r\n)+$/i;

const dkimSignature = z
  .string()
  .max(MAX_SIGNATURE_BYTES)
  .refine((s) => s === '' || DKIM_FIELDS.test(s), 'must be empty or DKIM-Signature header fields (each ending in CRLF, folded with CRLF and white space) and nothing else')
  .refine((s) => (s.match(/^DKIM-Signature:/gim) ?? []).length <= MAX_SIGNATURES, `must hold at most ${MAX_SIGNATURES} DKIM-Signature fields`);

export const recipientStateSchema = z.strictObject({
  address: line(MAX_ADDRESS).min(1),
  status: z.enum(['pending', 'delivered', 'failed']),
  /** Last reply or error for this recipient, as a person would read it. */
  lastReply: z
    .string()
    .max(MAX_REPLY)
    .refine((s) => !NUL.test(s), 'must not contain NUL')
    .optional(),
  /** Enhanced status code of the final or last outcome, e.g. 5.1.1. */
  statusCode: z
    .string()
    .regex(/^[245]\.\d{1,3}\.\d{1,3}$/, 'must be an enhanced status code such as 4.2.1')
    .optional(),
  remoteMta: line(255).optional(),
});

export const envelopeSchema = z.strictObject({
  /** The queue id (relay/spool/spool.ts newQueueId). */
  id: z.string().regex(/^[A-Za-z0-9]{1,64}$/, 'must be a queue id'),
  /** '' is the null reverse-path of a DSN. */
  sender: line(MAX_ADDRESS),
  recipients: z.array(recipientStateSchema).min(1).max(MAX_RECIPIENTS),
  /** When the relay answered 250 (ms since epoch); the queue lifetime counts from here. */
  receivedAt: time,
  listener: line(128).min(1),
  client: line(255).min(1),
  user: line(MAX_ADDRESS).optional(),
  messageId: line(998).optional(),
  /** The client declared an 8-bit body (MAIL FROM ... BODY=8BITMIME, RFC 6152); passed on downstream. */
  eightBit: z.boolean().optional(),
  /** Bytes of the header section (for DSNs, which quote the original headers); a handoff's is checked against its body by parseHandoffEnvelope. */
  headerLength: z.int().min(0),
  attempts: z.int().min(0).max(1_000_000),
  nextAttemptAt: time,
  delayNoticeSent: z.boolean().optional(),
  /**
   * The DKIM-Signature fields made at the first delivery attempt ('' when no sender domain
   * signs this mail): later attempts, and a peer that takes the message over, send the same.
   */
  dkimSignature: dkimSignature.optional(),
  /** The application's tags (header X-Mailfleet-Tags, removed before delivery): carried on every event of the message. */
  tags: z.array(line(MAX_TAG).min(1)).max(MAX_TAGS).optional(),
  /** The application's key/value metadata (header X-Mailfleet-Metadata, removed before delivery), on every event. */
  metadata: z
    .record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be a key of letters, digits, _ . -'), line(MAX_METADATA_VALUE))
    .refine((m) => Object.keys(m).length <= MAX_METADATA_KEYS, `must hold at most ${MAX_METADATA_KEYS} keys`)
    .optional(),
  /** Taken over from a peer relay (its queue id there): its events say handed_over, not received. */
  handedOverFrom: z.string().regex(/^[A-Za-z0-9]{1,64}$/, 'must be a queue id').optional(),
});

export type Envelope = z.infer<typeof envelopeSchema>;
export type RecipientState = z.infer<typeof recipientStateSchema>;
export type RecipientStatus = RecipientState['status'];

export const handoffEnvelopeSchema = envelopeSchema.omit({ id: true, handedOverFrom: true }).extend({
  /** The queue id at the relay that handed it over, for the logs of both. */
  originId: envelopeSchema.shape.id,
});

/** What travels with the message: what the peer needs to go on where this relay stopped. */
export type HandoffEnvelope = z.infer<typeof handoffEnvelopeSchema>;

export type EnvelopeResult = { ok: true; envelope: HandoffEnvelope } | { ok: false; error: string };

/** The issues as `path: message`, the path as dotted keys and indexes (`recipients.3.address`). */
function describeIssues(issues: z.core.$ZodIssue[]): string {
  const named = issues.slice(0, 5).map((i) => {
    const path = i.path.map(String);
    if (i.code === 'unrecognized_keys') return i.keys.map((k) => `${[...path, k].join('.')}: unknown field`).join('; ');
    return `${path.join('.') || '(envelope)'}: ${i.message}`;
  });
  return named.join('; ') + (issues.length > 5 ? ` (and ${issues.length - 5} more)` : '');
}

/**
 * Checks a handoff envelope (already parsed from JSON) against the schema and against the
 * message it came with: the header section cannot be longer than the message.
 */
export function parseHandoffEnvelope(value: unknown, bodyLength: number): EnvelopeResult {
  const r = handoffEnvelopeSchema.safeParse(value);
  if (!r.success) return { ok: false, error: describeIssues(r.error.issues) };
  if (r.data.headerLength > bodyLength) return { ok: false, error: `headerLength: ${r.data.headerLength} is beyond the message's ${bodyLength} bytes` };
  return { ok: true, envelope: r.data };
}
