/**
 * The header section of a message as it arrives: found in the stream, read for the fields
 * the relay needs (the originator fields, Message-ID, Date), and completed with a Received trace header and
 * a Message-ID and Date where the client left them out (RFC 5321 4.4, RFC 5322 3.6).
 */
import { isAppField } from './events/app-fields.js';
import addressparser from 'nodemailer/lib/addressparser';

export interface HeaderFacts {
  /** Bytes of the header section including the blank line that ends it. */
  length: number;
  /** The unfolded values of the From fields (see fromAddresses). */
  from: string[];
  /** The other fields that name who sent the message (RFC 5322 3.6.2, 3.6.6), unfolded: Sender, Resent-From, Resent-Sender. */
  otherOriginators: { field: OriginatorField; value: string }[];
  messageId?: string;
  hasDate: boolean;
  /** An X-Mailfleet-Tags or X-Mailfleet-Metadata field is present (relay/events/app-fields.ts takes them out). */
  hasAppFields?: boolean;
  /** The message has its own List-Unsubscribe (relay/links/unsubscribe.ts then adds none). */
  hasListUnsubscribe?: boolean;
}

export type OriginatorField = 'Sender' | 'Resent-From' | 'Resent-Sender';
const OTHER_ORIGINATORS: Record<string, OriginatorField> = { sender: 'Sender', 'resent-from': 'Resent-From', 'resent-sender': 'Resent-Sender' };

/**
 * Finds the end of the header section (CRLF CRLF, or LF LF from sloppy clients); -1 while
 * unseen. Never guesses an end: a header that has not ended is refused by intake once it
 * passes the limit (taking the bytes so far as "the header" let a From after them go unread).
 */
export function headerEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  if (crlf < 0 && lf < 0) return -1;
  if (crlf < 0) return lf + 2;
  if (lf < 0) return crlf + 4;
  return Math.min(crlf + 4, lf + 2);
}

/**
 * The fields intake needs, in one pass that looks only at From, Message-ID and Date (it runs
 * for every message, so it does not build the whole field list).
 */
export function headerFacts(header: Buffer): HeaderFacts {
  const text = header.toString('utf8');
  const facts: HeaderFacts = { length: header.length, from: [], otherOriginators: [], hasDate: false };
  let pos = 0;
  // The next colon at or after pos, found again only once pos has passed it: searching from
  // every line would rescan a header of lines without one over and over (quadratic).
  let colon = -1;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    if (colon < pos) {
      colon = text.indexOf(':', pos);
      if (colon < 0) colon = text.length;
    }
    const name = colon > pos && colon < end ? text.slice(pos, colon).trim().toLowerCase() : '';
    // The value runs on over folded lines (those that start with a space or a tab).
    let next = end + 1;
    while (next < text.length && (text[next] === ' ' || text[next] === '\t')) {
      end = text.indexOf('\n', next);
      if (end < 0) end = text.length;
      next = end + 1;
    }
    if (name === 'from' || name === 'message-id' || name === 'date' || name in OTHER_ORIGINATORS) {
      const value = text.slice(colon + 1, end).replace(/\r?\n[ \t]+/g, ' ').trim();
      if (name === 'from') facts.from.push(value);
      else if (name === 'date') facts.hasDate = true;
      else if (name === 'message-id') facts.messageId ??= value;
      else facts.otherOriginators.push({ field: OTHER_ORIGINATORS[name]!, value });
    } else if (name.startsWith('x-mailfleet-') && isAppField(name)) facts.hasAppFields = true;
    else if (name === 'list-unsubscribe') facts.hasListUnsubscribe = true;
    pos = next;
  }
  return facts;
}

/** The addresses in From fields (groups flattened). */
export function fromAddresses(facts: HeaderFacts): string[] {
  return facts.from.flatMap((value) => flatten(addressparser(value)));
}

/** Every address that names the sender, with its field: From first, then Sender, Resent-From, Resent-Sender. */
export function originatorAddresses(facts: HeaderFacts): { field: 'From' | OriginatorField; address: string }[] {
  return [
    ...fromAddresses(facts).map((address) => ({ field: 'From' as const, address })),
    ...facts.otherOriginators.flatMap(({ field, value }) => flatten(addressparser(value)).map((address) => ({ field, address }))),
  ];
}

type Parsed = ReturnType<typeof addressparser>;
function flatten(list: Parsed): string[] {
  return list.flatMap((a) => ('group' in a && a.group ? flatten(a.group as Parsed) : a.address ? [a.address] : []));
}

/** RFC 5322 date-time, e.g. `Sat, 28 Nov 2026 21:22:55 +0000`. */
export function rfc5322Date(d: Date): string {
  return d.toUTCString().replace('GMT', '+0000');
}

export interface TraceInfo {
  heloName: string;
  clientAddress: string;
  clientHostname?: string;
  byHostname: string;
  /** ESMTP, ESMTPS, ESMTPA, ESMTPSA (RFC 3848). */
  protocol: string;
  queueId: string;
  /** Only named when there is one recipient (RFC 5321 4.4 on privacy). */
  recipient?: string;
  tls?: string;
  date: Date;
}

export function receivedHeader(t: TraceInfo): string {
  const from = `from ${t.heloName || 'unknown'} (${t.clientHostname && t.clientHostname !== `[${t.clientAddress}]` ? `${t.clientHostname} ` : ''}[${t.clientAddress}])`;
  const tls = t.tls ? `\r\n\t(${t.tls})` : '';
  const forPart = t.recipient ? `\r\n\tfor <${t.recipient}>` : '';
  return `Received: ${from}\r\n\tby ${t.byHostname} (mailfleet) with ${t.protocol} id ${t.queueId}${tls}${forPart};\r\n\t${rfc5322Date(t.date)}\r\n`;
}

/** Header lines to prepend: the trace, and Message-ID and Date when missing. */
export function addedHeaders(facts: HeaderFacts, trace: TraceInfo): { text: string; messageId: string } {
  let text = receivedHeader(trace);
  const messageId = facts.messageId ?? `<${trace.queueId}@${trace.byHostname}>`;
  if (!facts.messageId) text += `Message-ID: ${messageId}\r\n`;
  if (!facts.hasDate) text += `Date: ${rfc5322Date(trace.date)}\r\n`;
  return { text, messageId };
}
