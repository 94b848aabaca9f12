/**
 * Delivery status notifications: bounces and delay notices as RFC 3464 reports inside an
 * RFC 6522 multipart/report. Pure: the relay decides when one is due, and queues the bytes
 * this returns like any other message.
 */
import { createHash } from 'node:crypto';

export interface DsnRecipient {
  /** The original recipient, with or without angle brackets. */
  address: string;
  action: 'failed' | 'delayed';
  /** Enhanced status code (RFC 3463), e.g. 5.1.1, or 4.4.7 for a message that expired in the queue. */
  status: string;
  /** The remote reply (`550 5.1.1 ...`), or what happened when there was none (`connection refused`). */
  diagnostic?: string;
  /** Host that gave the reply. */
  remoteMta?: string;
  lastAttempt?: Date;
  /** Only reported for `delayed` recipients. */
  willRetryUntil?: Date;
}

export interface DsnInput {
  /** The relay's hostname. */
  reportingMta: string;
  /** The relay's id for the original message, reported so a person can find it in the logs. */
  queueId: string;
  arrivalDate: Date;
  /** The original envelope sender, to whom the DSN goes. */
  sender: string;
  recipients: DsnRecipient[];
  /** Header section of the original message; anything after its blank line is ignored. */
  originalHeaders: Buffer;
  now: Date;
  /** Message-ID of the DSN, e.g. `<abc@relay.example>`. */
  messageId: string;
}

const CRLF = '\r\n';
/** Width of the lines this module writes (RFC 5322 recommends 78). */
const WIDTH = 78;
/** RFC 5322 2.1.1: no line may be longer than 998 octets, CRLF excluded. */
const MAX_LINE = 998;

const SUBJECT_FAILED = 'Undelivered Mail Returned to Sender';
const SUBJECT_DELAYED = 'Delayed Mail (still being retried)';

/** Envelope addresses arrive with or without angle brackets; the null sender is `<>` or empty. */
function bareAddress(address: string): string {
  const trimmed = oneLine(address);
  return trimmed.startsWith('<') && trimmed.endsWith('>') ? trimmed.slice(1, -1).trim() : trimmed;
}

/**
 * Whether a DSN may be sent for a message from this envelope sender. Never for the null
 * sender (RFC 5321 6.1, RFC 3464): that is what DSNs themselves are sent from, and answering
 * them could start a loop between two mail systems.
 */
export function mayBounce(sender: string): boolean {
  return bareAddress(sender) !== '';
}

/** Multi-line SMTP replies and stray control characters must not break out of a field. */
function oneLine(text: string): string {
  return text.replace(/[\p{Cc}\s]+/gu, ' ').trim();
}

function isPrintableAscii(text: string): boolean {
  return /^[\x20-\x7e]*$/.test(text);
}

/** RFC 6533 EmbeddedUnicodeChar (`\x{E9}`): keeps the delivery-status part ASCII without losing characters. */
function escapeChars(text: string, alsoEscape: string): string {
  return Array.from(text, (ch) => {
    const cp = ch.codePointAt(0) ?? 0;
    return cp > 0x7e || alsoEscape.includes(ch) ? `\\x{${cp.toString(16).toUpperCase()}}` : ch;
  }).join('');
}

/** An address field value: `rfc822` for ASCII, RFC 6533 `utf-8` in its xtext form for SMTPUTF8 addresses. */
function addressValue(address: string): string {
  // utf-8-addr-xtext leaves only QCHAR unescaped, which excludes space, '+', '=' and '\'.
  return isPrintableAscii(address) ? `rfc822; ${address}` : `utf-8; ${escapeChars(address, ' +=\\')}`;
}

/** Diagnostic type `smtp` promises an SMTP reply; local errors (refused connection, DNS) get our own type. */
function diagnosticValue(diagnostic: string): string {
  const type = /^[245]\d\d(?:[ -]|$)/.test(diagnostic) ? 'smtp' : 'X-Mailfleet';
  return `${type}; ${escapeChars(diagnostic, '')}`;
}

function rfc5322Date(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new RangeError('a DSN date is not a valid Date');
  // toUTCString gives RFC 5322's layout but the obsolete zone "GMT"; a numeric zone is preferred.
  return date.toUTCString().replace(/GMT$/, '+0000');
}

/**
 * Lays `text` out after `head` in lines of at most WIDTH characters, breaking at spaces;
 * continuation lines start with `indent`. For header fields the indent is one space, so
 * unfolding restores the value exactly. A word longer than a line is cut: the line limit wins.
 */
function fold(head: string, text: string, indent: string): string[] {
  const lines: string[] = [];
  let line = head;
  let hasWord = false;
  for (let word of text.split(' ')) {
    for (;;) {
      const sep = line === indent ? '' : ' ';
      if (line.length + sep.length + word.length <= WIDTH) {
        line += sep + word;
        hasWord = true;
        break;
      }
      if (hasWord) {
        lines.push(line);
        line = indent;
        hasWord = false;
        continue;
      }
      const room = Math.max(WIDTH - line.length - sep.length, 1);
      lines.push(line + sep + word.slice(0, room));
      line = indent;
      word = word.slice(room);
    }
  }
  lines.push(line);
  return lines;
}

function field(name: string, value: string): string {
  return fold(`${name}:`, value, ' ').join(CRLF);
}

/**
 * A line of the original header section, in latin1 so one character is one octet. Only lines
 * over the limit are folded: before whitespace when there is some (lossless), otherwise with
 * an inserted space, never inside a UTF-8 sequence.
 */
function limitLine(line: string): string[] {
  const out: string[] = [];
  let rest = line;
  while (rest.length > MAX_LINE) {
    const space = Math.max(rest.lastIndexOf(' ', MAX_LINE), rest.lastIndexOf('\t', MAX_LINE));
    if (space > 0 && rest.slice(0, space).trim() !== '') {
      out.push(rest.slice(0, space));
      rest = rest.slice(space);
      continue;
    }
    let cut = MAX_LINE;
    while (cut > 1 && (rest.charCodeAt(cut) & 0xc0) === 0x80) cut--;
    out.push(rest.slice(0, cut));
    rest = ` ${rest.slice(cut)}`;
  }
  out.push(rest);
  return out;
}

/** The header lines of the original message, with CRLF restored and the body cut off. */
function originalHeaderLines(raw: Buffer): string[] {
  const lines: string[] = [];
  for (const line of raw.toString('latin1').split(/\r\n|\r|\n/)) {
    if (line === '') break;
    lines.push(...limitLine(line));
  }
  return lines;
}

function validate(input: DsnInput): void {
  if (!mayBounce(input.sender)) throw new RangeError('a DSN is never sent to the null sender: check mayBounce() first');
  if (input.recipients.length === 0) throw new RangeError('a DSN needs at least one recipient (RFC 3464 2.3)');
  for (const r of input.recipients) {
    const cls = /^([45])\.\d{1,3}\.\d{1,3}$/.exec(r.status)?.[1];
    if (!cls || (r.action === 'delayed' && cls !== '4')) {
      throw new RangeError(`status "${r.status}" does not fit action "${r.action}" for ${r.address}: expected 4.x.x or 5.x.x, and 4.x.x when delayed`);
    }
  }
}

function describeRecipient(r: DsnRecipient): string[] {
  const summary =
    r.action === 'delayed'
      ? `delivery delayed (${r.status})`
      : r.status.startsWith('4')
        ? `delivery failed, gave up retrying (${r.status})`
        : `delivery failed permanently (${r.status})`;
  const lines = fold(`<${bareAddress(r.address)}>:`, summary, '    ');
  const diagnostic = oneLine(r.diagnostic ?? '');
  if (diagnostic) {
    const head = r.remoteMta ? `    ${oneLine(r.remoteMta)} said:` : '    Reason:';
    lines.push(...fold(head, diagnostic, '        '));
  }
  if (r.lastAttempt) lines.push(`    Last attempt: ${rfc5322Date(r.lastAttempt)}`);
  if (r.action === 'delayed' && r.willRetryUntil) lines.push(`    Still trying until: ${rfc5322Date(r.willRetryUntil)}`);
  return lines;
}

/** Part 1, for the person who sent the message. */
function notification(input: DsnInput, failed: DsnRecipient[], delayed: DsnRecipient[]): string {
  const lines = [`This is the mail system at host ${oneLine(input.reportingMta)}.`, ''];
  if (failed.length > 0) {
    lines.push(
      'Your message could not be delivered to the recipients below, and the mail',
      'system has stopped trying. The reason is given for each, with the reply of',
      'the receiving server when there was one.',
      '',
      'What you can do:',
      '  - If the address does not exist, check it for typing mistakes and send',
      '    the message again.',
      '  - If the problem is on the receiving side (mailbox full, server not',
      '    reachable), try again later or reach the recipient another way.',
      '  - If you need help, forward this report to your postmaster.',
      '',
    );
    for (const r of failed) lines.push(...describeRecipient(r), '');
  }
  if (delayed.length > 0) {
    const note =
      failed.length > 0
        ? [
            'Delivery to the recipients below is only delayed: you do not need to send',
            'the message to them again. The mail system is still trying and will tell',
            'you if it gives up.',
          ]
        : [
            'THIS IS A WARNING ONLY: you do not need to send your message again.',
            'It has not been delivered yet to the recipients below. The mail system is',
            'still trying and will tell you if it gives up.',
          ];
    lines.push(...note, '');
    for (const r of delayed) lines.push(...describeRecipient(r), '');
  }
  lines.push(
    'The headers of your message are attached; its body is not.',
    `Queue ID: ${oneLine(input.queueId)}`,
    `Arrived: ${rfc5322Date(input.arrivalDate)}`,
  );
  return lines.join(CRLF) + CRLF;
}

/** Part 2, for programs: RFC 3464 per-message fields, then one field group per recipient. */
function deliveryStatus(input: DsnInput): string {
  const groups = [
    [
      field('Reporting-MTA', `dns; ${oneLine(input.reportingMta)}`),
      // Original-Envelope-Id is reserved for the sender's ENVID; our own id goes in an extension field.
      field('X-Mailfleet-Queue-ID', oneLine(input.queueId)),
      field('Arrival-Date', rfc5322Date(input.arrivalDate)),
    ],
    ...input.recipients.map((r) => {
      const group = [field('Final-Recipient', addressValue(bareAddress(r.address))), field('Action', r.action), field('Status', r.status)];
      if (r.remoteMta) group.push(field('Remote-MTA', `dns; ${oneLine(r.remoteMta)}`));
      const diagnostic = oneLine(r.diagnostic ?? '');
      if (diagnostic) group.push(field('Diagnostic-Code', diagnosticValue(diagnostic)));
      if (r.lastAttempt) group.push(field('Last-Attempt-Date', rfc5322Date(r.lastAttempt)));
      if (r.action === 'delayed' && r.willRetryUntil) group.push(field('Will-Retry-Until', rfc5322Date(r.willRetryUntil)));
      return group;
    }),
  ];
  return groups.map((g) => g.join(CRLF) + CRLF).join(CRLF);
}

/** Derived from the Message-ID so output is reproducible; lengthened until no part contains it. */
function chooseBoundary(messageId: string, parts: string[]): string {
  const base = `=_mailfleet_${createHash('sha256').update(messageId).digest('hex').slice(0, 24)}`;
  let boundary = base;
  for (let n = 1; parts.some((p) => p.includes(boundary)); n++) boundary = `${base}_${n}`;
  return boundary;
}

export function buildDsn(input: DsnInput): Buffer {
  validate(input);
  const sender = bareAddress(input.sender);
  const failed = input.recipients.filter((r) => r.action === 'failed');
  const delayed = input.recipients.filter((r) => r.action === 'delayed');

  const text = notification(input, failed, delayed);
  // An SMTPUTF8 address in the text would make the part 8-bit; base64 lets it cross any hop.
  const textIsAscii = isPrintableAscii(text.replaceAll(CRLF, ''));
  const textBody = textIsAscii ? text : `${Buffer.from(text, 'utf8').toString('base64').replace(/.{76}/g, `$&${CRLF}`)}${CRLF}`;
  const textPart = [
    'Content-Description: Notification',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Transfer-Encoding: ${textIsAscii ? '7bit' : 'base64'}`,
    '',
    textBody,
  ].join(CRLF);

  const statusPart = ['Content-Description: Delivery report', 'Content-Type: message/delivery-status', '', deliveryStatus(input)].join(CRLF);

  const headerLines = originalHeaderLines(input.originalHeaders);
  // RFC 6533 6.3: a header section with UTF-8 in it (an SMTPUTF8 message) is message/global-headers.
  const headersAreAscii = !/[\x80-\xff]/.test(headerLines.join(''));
  const headersPart = [
    'Content-Description: Undelivered Message Headers',
    `Content-Type: ${headersAreAscii ? 'text/rfc822-headers' : 'message/global-headers'}`,
    ...(headersAreAscii ? [] : ['Content-Transfer-Encoding: 8bit']),
    '',
    ...headerLines,
  ].join(CRLF) + CRLF;

  const boundary = chooseBoundary(input.messageId, [textPart, statusPart, headersPart]);
  const subject = failed.length > 0 ? SUBJECT_FAILED : SUBJECT_DELAYED;
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${oneLine(input.reportingMta)}>`,
    `To: <${sender}>`,
    `Subject: ${subject}`,
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: ${oneLine(input.messageId)}`,
    // RFC 3834: marks the DSN as automatic, so responders such as vacation programs stay quiet.
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status;',
    ` boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    '',
  ].join(CRLF);
  const separator = `${CRLF}--${boundary}${CRLF}`;
  // The header part is latin1 so the original header bytes pass through unchanged.
  return Buffer.concat([
    Buffer.from(head, 'utf8'),
    Buffer.from(textPart, 'utf8'),
    Buffer.from(separator, 'utf8'),
    Buffer.from(statusPart, 'utf8'),
    Buffer.from(separator, 'utf8'),
    Buffer.from(headersPart, 'latin1'),
    Buffer.from(`${CRLF}--${boundary}--${CRLF}`, 'utf8'),
  ]);
}
