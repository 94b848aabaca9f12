/**
 * The header section of a message as it arrives: found in the stream, read for the fields
 * the relay needs (From, Message-ID, Date), and completed with a Received trace header and
 * a Message-ID and Date where the client left them out (RFC 5321 4.4, RFC 5322 3.6).
 */
import addressparser from 'nodemailer/lib/addressparser';

export interface HeaderFacts {
  /** Bytes of the header section including the blank line that ends it. */
  length: number;
  fromAddresses: string[];
  messageId?: string;
  hasDate: boolean;
}

const MAX_HEADER_BYTES = 1024 * 1024;

/** Finds the end of the header section (CRLF CRLF, or LF LF from sloppy clients); -1 while unseen. */
export function headerEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  if (crlf < 0 && lf < 0) return buf.length > MAX_HEADER_BYTES ? buf.length : -1;
  if (crlf < 0) return lf + 2;
  if (lf < 0) return crlf + 4;
  return Math.min(crlf + 4, lf + 2);
}

/** Unfolded header fields, names lower-cased; values raw. */
export function parseHeaderFields(header: Buffer): { name: string; value: string }[] {
  const fields: { name: string; value: string }[] = [];
  for (const line of header.toString('utf8').split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && fields.length) fields[fields.length - 1]!.value += ' ' + line.trim();
    else {
      const colon = line.indexOf(':');
      if (colon > 0) fields.push({ name: line.slice(0, colon).trim().toLowerCase(), value: line.slice(colon + 1).trim() });
    }
  }
  return fields;
}

export function headerFacts(header: Buffer): HeaderFacts {
  const fields = parseHeaderFields(header);
  const get = (n: string) => fields.find((f) => f.name === n)?.value;
  const from = fields.filter((f) => f.name === 'from').flatMap((f) => flatten(addressparser(f.value)));
  return { length: header.length, fromAddresses: from, messageId: get('message-id'), hasDate: get('date') !== undefined };
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
