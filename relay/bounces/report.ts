/**
 * What a report sent to a return path says: an RFC 3464 delivery status notification (a bounce
 * after the 250, or a delay), an RFC 5965 feedback report (a complaint), or something else (an
 * auto-reply, a challenge), read with postal-mime, a parser with limits on parts, nesting and
 * header sizes (a dependency for this: MIME in the wild is what a parser of our own would get
 * wrong). The rest is pure: the status fields are header-like blocks, read here.
 */

export interface DsnRecipient {
  recipient: string;
  action: 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded';
  status: string;
  diagnostic?: string;
  remoteMta?: string;
}

export type Report =
  | { kind: 'dsn'; reportingMta?: string; recipients: DsnRecipient[]; original: OriginalMessage }
  | { kind: 'complaint'; feedbackType: string; userAgent?: string; recipients: string[]; sourceIp?: string; original: OriginalMessage }
  | { kind: 'other'; why: string };

/** What the report quotes of the message it is about. */
export interface OriginalMessage {
  messageId?: string;
  /** The Return-Path the receiver added: the VERP address when the report did not come to it. */
  returnPath?: string;
  to?: string;
}

/** Bounds for what a report may make us parse: reports quote headers, sometimes whole messages. */
const PARSE_LIMITS = { maxNestingDepth: 32, maxHeadersSize: 512 * 1024, maxPartCount: 64, maxRfc822NestingDepth: 0 };

export async function readReport(raw: Buffer): Promise<Report> {
  // Loaded with the first report: only a relay with a `bounces` listener needs the parser.
  const { default: PostalMime } = await import('postal-mime');
  let email;
  try {
    email = await PostalMime.parse(raw, { attachmentEncoding: 'utf8', forceRfc822Attachments: true, ...PARSE_LIMITS });
  } catch (err) {
    return { kind: 'other', why: `not a MIME message we can read: ${(err as Error).message}` };
  }
  const part = (...types: string[]) => email.attachments.find((a) => types.includes(a.mimeType.toLowerCase()))?.content as string | undefined;
  const originalPart = part('message/rfc822', 'text/rfc822-headers', 'message/global', 'message/global-headers');
  const original = originalPart ? originalOf(originalPart) : {};
  const status = part('message/delivery-status', 'message/global-delivery-status');
  if (status) {
    const [perMessage, ...perRecipient] = blocks(status);
    const recipients = perRecipient.map(dsnRecipient).filter((r): r is DsnRecipient => !!r);
    if (!recipients.length) return { kind: 'other', why: 'a delivery status notification without a recipient' };
    return { kind: 'dsn', reportingMta: typed(perMessage?.get('reporting-mta')?.[0]), recipients, original };
  }
  const feedback = part('message/feedback-report');
  if (feedback) {
    const f = blocks(feedback)[0] ?? new Map<string, string[]>();
    const recipients = (f.get('original-rcpt-to') ?? []).map(angle).filter(Boolean);
    if (!recipients.length && original.to) recipients.push(original.to);
    return { kind: 'complaint', feedbackType: (f.get('feedback-type')?.[0] ?? 'other').toLowerCase(), userAgent: f.get('user-agent')?.[0], recipients, sourceIp: f.get('source-ip')?.[0], original };
  }
  return { kind: 'other', why: `${email.attachments.length ? 'no delivery-status or feedback-report part' : 'no report parts'} (subject: ${(email.subject ?? '').slice(0, 80)})` };
}

/** Header-like blocks separated by blank lines; each a map of lower-case names to unfolded values. */
export function blocks(text: string): Map<string, string[]>[] {
  return text
    .replace(/\r\n/g, '\n')
    .split(/\n[ \t]*\n/)
    .map((block) => {
      const fields = new Map<string, string[]>();
      for (const line of block.replace(/\n[ \t]+/g, ' ').split('\n')) {
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        fields.set(name, [...(fields.get(name) ?? []), line.slice(colon + 1).trim()]);
      }
      return fields;
    })
    .filter((f) => f.size > 0);
}

/** "rfc822; user@example.com" → "user@example.com" (the address type is dropped). */
function typed(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const semi = value.indexOf(';');
  return (semi >= 0 ? value.slice(semi + 1) : value).trim() || undefined;
}

const angle = (v: string) => v.trim().replace(/^<(.*)>$/, '$1').trim();

function dsnRecipient(f: Map<string, string[]>): DsnRecipient | undefined {
  const recipient = typed(f.get('final-recipient')?.[0]) ?? typed(f.get('original-recipient')?.[0]);
  const action = f.get('action')?.[0]?.toLowerCase().split(/\s/)[0];
  if (!recipient || !action || !['failed', 'delayed', 'delivered', 'relayed', 'expanded'].includes(action)) return undefined;
  const status = /^[245]\.\d{1,3}\.\d{1,3}/.exec(f.get('status')?.[0] ?? '')?.[0] ?? (action === 'failed' ? '5.0.0' : '4.0.0');
  return { recipient: angle(recipient), action: action as DsnRecipient['action'], status, diagnostic: typed(f.get('diagnostic-code')?.[0]), remoteMta: typed(f.get('remote-mta')?.[0]) };
}

function originalOf(text: string): OriginalMessage {
  const end = text.search(/\r?\n\r?\n/);
  const header = blocks(end >= 0 ? text.slice(0, end) : text)[0] ?? new Map<string, string[]>();
  const to = header.get('to')?.[0];
  return { messageId: header.get('message-id')?.[0], returnPath: header.get('return-path')?.[0] && angle(header.get('return-path')![0]!), to: to ? (/<([^>]+)>/.exec(to)?.[1] ?? to).trim() : undefined };
}
