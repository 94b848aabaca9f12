import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { buildDsn, mayBounce, type DsnInput, type DsnRecipient } from './bounce.js';

/**
 * The DSN is read back by a parser that shares no code with the builder: Python's standard
 * `email` package, which also splits message/delivery-status into its field groups.
 */
const PARSE = String.raw`
import email, json, re, sys
from email.utils import parsedate_to_datetime

def text(value):
    # compat32 keeps 8-bit header bytes as surrogate escapes; folding is removed as RFC 5322 unfolds.
    raw = str(value).encode('ascii', 'surrogateescape').decode('utf-8')
    return re.sub(r'\r?\n', '', raw)

def fields(message):
    return [[name, text(value)] for name, value in message.raw_items()]

msg = email.message_from_bytes(sys.stdin.buffer.read())
parts = []
for part in msg.get_payload():
    entry = {'contentType': part.get_content_type()}
    if entry['contentType'] == 'message/delivery-status':
        entry['groups'] = [fields(block) for block in part.get_payload()]
    elif entry['contentType'] == 'text/rfc822-headers':
        entry['headers'] = fields(email.message_from_bytes(part.get_payload(decode=True)))
    elif entry['contentType'] == 'message/global-headers':
        entry['headers'] = fields(part.get_payload()[0])
    else:
        entry['text'] = part.get_payload(decode=True).decode(part.get_content_charset())
    parts.append(entry)
print(json.dumps({
    'contentType': msg.get_content_type(),
    'reportType': msg.get_param('report-type'),
    'headers': fields(msg),
    'date': parsedate_to_datetime(msg['Date']).isoformat(),
    'parts': parts,
    'defects': [type(d).__name__ for m in msg.walk() for d in m.defects],
}))
`;

type Fields = [string, string][];
interface Parsed {
  contentType: string;
  reportType: string;
  headers: Fields;
  date: string;
  parts: { contentType: string; groups?: Fields[]; headers?: Fields; text?: string }[];
  defects: string[];
}

function parse(dsn: Buffer): Parsed {
  const run = spawnSync('/usr/bin/python3', ['-c', PARSE], { input: dsn, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`python could not parse the DSN: ${run.stderr}`);
  return JSON.parse(run.stdout) as Parsed;
}

/** Field lookup as a DSN reader does it: names are case-insensitive. */
function get(fields: Fields, name: string): string | undefined {
  return fields.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
}

function pyDate(value: string | undefined): string {
  // Python checks the RFC 5322 syntax; an unparseable date raises there, not here.
  const run = spawnSync('/usr/bin/python3', ['-c', 'import sys; from email.utils import parsedate_to_datetime as p; print(p(sys.argv[1]).isoformat())', value ?? ''], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`not an RFC 5322 date: ${value}`);
  return new Date(run.stdout.trim()).toISOString();
}

const ORIGINAL = Buffer.from(
  [
    'Received: from app.example.test by relay.example; Wed, 1 Jan 2025 00:00:00 +0000',
    'From: App <app@example.test>',
    'To: a@dest.test, b@dest.test',
    'Subject: Your invoice',
    'Message-ID: <orig-1@example.test>',
    '',
    'SECRET-BODY-LINE: the body must not be returned',
    '',
  ].join('\r\n'),
);

function input(over: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: 'relay.example',
    queueId: 'M5QK3ABCDEF0123',
    arrivalDate: new Date('2025-01-01T00:00:00Z'),
    sender: 'app@example.test',
    recipients: [
      {
        address: 'a@dest.test',
        action: 'failed',
        status: '5.1.1',
        diagnostic: '550 5.1.1 <a@dest.test>: Recipient address rejected: User unknown',
        remoteMta: 'mx1.dest.test',
        lastAttempt: new Date('2025-01-01T00:00:05Z'),
      },
      {
        address: 'b@dest.test',
        action: 'failed',
        status: '5.2.2',
        diagnostic: '552 5.2.2 <b@dest.test>: Mailbox full',
        remoteMta: 'mx2.dest.test',
        lastAttempt: new Date('2025-01-01T00:00:06Z'),
      },
    ],
    originalHeaders: ORIGINAL,
    now: new Date('2025-01-01T00:00:07Z'),
    messageId: '<dsn-1@relay.example>',
    ...over,
  };
}

const delayed: DsnRecipient = {
  address: 'c@slow.test',
  action: 'delayed',
  status: '4.4.1',
  diagnostic: '451 4.4.1 try again later',
  remoteMta: 'mx.slow.test',
  lastAttempt: new Date('2025-01-01T04:00:00Z'),
  willRetryUntil: new Date('2025-01-06T00:00:00Z'),
};

/** The notification is wrapped for reading; assertions look at its words, not its line breaks. */
function words(text: string | undefined): string {
  return (text ?? '').replace(/\s+/g, ' ');
}

function expectWellFormedLines(dsn: Buffer): void {
  expect(dsn.subarray(-2).toString('latin1')).toBe('\r\n');
  const lines = dsn.toString('latin1').slice(0, -2).split('\r\n');
  for (const line of lines) {
    expect(line).not.toMatch(/[\r\n]/); // no bare CR or LF anywhere
    expect(line.length).toBeLessThanOrEqual(998); // latin1: one character per octet
  }
}

describe('buildDsn', () => {
  it('reports several failed recipients in one RFC 3464 report a standard parser reads', () => {
    const parsed = parse(buildDsn(input()));

    expect(parsed.defects).toEqual([]);
    expect(parsed.contentType).toBe('multipart/report');
    expect(parsed.reportType).toBe('delivery-status');
    expect(parsed.parts.map((p) => p.contentType)).toEqual(['text/plain', 'message/delivery-status', 'text/rfc822-headers']);

    expect(get(parsed.headers, 'From')).toBe('Mail Delivery System <MAILER-DAEMON@relay.example>');
    expect(get(parsed.headers, 'To')).toBe('<app@example.test>');
    expect(get(parsed.headers, 'Subject')).toBe('Undelivered Mail Returned to Sender');
    expect(get(parsed.headers, 'Message-ID')).toBe('<dsn-1@relay.example>');
    expect(get(parsed.headers, 'Auto-Submitted')).toBe('auto-replied');
    expect(get(parsed.headers, 'MIME-Version')).toBe('1.0');
    expect(new Date(parsed.date).toISOString()).toBe('2025-01-01T00:00:07.000Z');

    const [perMessage, ...perRecipient] = parsed.parts[1]!.groups!;
    expect(get(perMessage!, 'Reporting-MTA')).toBe('dns; relay.example');
    expect(get(perMessage!, 'X-Mailfleet-Queue-ID')).toBe('M5QK3ABCDEF0123');
    expect(pyDate(get(perMessage!, 'Arrival-Date'))).toBe('2025-01-01T00:00:00.000Z');

    expect(perRecipient).toHaveLength(2);
    const [a, b] = perRecipient as [Fields, Fields];
    expect(get(a, 'Final-Recipient')).toBe('rfc822; a@dest.test');
    expect(get(a, 'Action')).toBe('failed');
    expect(get(a, 'Status')).toBe('5.1.1');
    expect(get(a, 'Remote-MTA')).toBe('dns; mx1.dest.test');
    expect(get(a, 'Diagnostic-Code')).toBe('smtp; 550 5.1.1 <a@dest.test>: Recipient address rejected: User unknown');
    expect(pyDate(get(a, 'Last-Attempt-Date'))).toBe('2025-01-01T00:00:05.000Z');
    expect(get(a, 'Will-Retry-Until')).toBeUndefined();
    expect(get(b, 'Final-Recipient')).toBe('rfc822; b@dest.test');
    expect(get(b, 'Status')).toBe('5.2.2');
    expect(get(b, 'Diagnostic-Code')).toBe('smtp; 552 5.2.2 <b@dest.test>: Mailbox full');

    // The person reading it sees each recipient with the server's reply, and the queue id to quote.
    const text = words(parsed.parts[0]!.text);
    expect(text).toContain('This is the mail system at host relay.example.');
    expect(text).toContain('<a@dest.test>: delivery failed permanently (5.1.1) mx1.dest.test said: 550 5.1.1 <a@dest.test>: Recipient address rejected: User unknown');
    expect(text).toContain('<b@dest.test>: delivery failed permanently (5.2.2) mx2.dest.test said: 552 5.2.2 <b@dest.test>: Mailbox full');
    expect(text).toContain('M5QK3ABCDEF0123');
    expect(text).not.toContain('WARNING ONLY');
  });

  it('returns the original headers in part 3 and never the body', () => {
    const dsn = buildDsn(input());
    const parsed = parse(dsn);
    const headers = parsed.parts[2]!.headers!;
    expect(headers.map(([n]) => n)).toEqual(['Received', 'From', 'To', 'Subject', 'Message-ID']);
    expect(get(headers, 'Subject')).toBe('Your invoice');
    expect(get(headers, 'Message-ID')).toBe('<orig-1@example.test>');
    expect(dsn.toString('latin1')).not.toContain('SECRET-BODY-LINE');
  });

  it('restores CRLF in original headers stored with bare LF', () => {
    const dsn = buildDsn(input({ originalHeaders: Buffer.from('Subject: lf only\nX-Folded: one\n  two\n\nbody\n') }));
    expectWellFormedLines(dsn);
    expect(get(parse(dsn).parts[2]!.headers!, 'X-Folded')).toBe('one  two');
  });

  it('sends a delay notice with Action: delayed and Will-Retry-Until', () => {
    const parsed = parse(buildDsn(input({ recipients: [delayed] })));
    expect(parsed.defects).toEqual([]);
    expect(get(parsed.headers, 'Subject')).toBe('Delayed Mail (still being retried)');
    const group = parsed.parts[1]!.groups![1]!;
    expect(get(group, 'Action')).toBe('delayed');
    expect(get(group, 'Status')).toBe('4.4.1');
    expect(pyDate(get(group, 'Will-Retry-Until'))).toBe('2025-01-06T00:00:00.000Z');
    const text = words(parsed.parts[0]!.text);
    expect(text).toContain('WARNING ONLY');
    expect(text).toContain('<c@slow.test>: delivery delayed (4.4.1) mx.slow.test said: 451 4.4.1 try again later');
    expect(text).toContain('Still trying until: Mon, 06 Jan 2025 00:00:00 +0000');
  });

  it('titles a report with both failed and delayed recipients as undelivered', () => {
    const both = input();
    const parsed = parse(buildDsn({ ...both, recipients: [...both.recipients, delayed] }));
    expect(get(parsed.headers, 'Subject')).toBe('Undelivered Mail Returned to Sender');
    expect(parsed.parts[1]!.groups!.slice(1).map((g) => get(g, 'Action'))).toEqual(['failed', 'failed', 'delayed']);
    expect(words(parsed.parts[0]!.text)).toContain('only delayed');
  });

  it('ends every line in CRLF and keeps each under 998 octets, even with a 2,000-character diagnostic', () => {
    const reply = `550 5.7.1 ${'blocked because of policy reasons '.repeat(60)}`.trim();
    const token = 'x'.repeat(2000);
    const dsn = buildDsn(
      input({
        recipients: [
          { address: 'a@dest.test', action: 'failed', status: '5.7.1', diagnostic: reply, remoteMta: 'mx1.dest.test' },
          { address: 'b@dest.test', action: 'failed', status: '5.7.1', diagnostic: `550 ${token}`, remoteMta: 'mx2.dest.test' },
        ],
        originalHeaders: Buffer.from(`Subject: ok\r\nX-Long: ${'y'.repeat(3000)}\r\nX-Spaced: ${'word '.repeat(600)}end\r\n\r\n`),
      }),
    );
    expect(reply.length).toBeGreaterThan(2000);
    expectWellFormedLines(dsn);

    const parsed = parse(dsn);
    expect(parsed.defects).toEqual([]);
    const [, a, b] = parsed.parts[1]!.groups! as [Fields, Fields, Fields];
    // Folded at spaces, so unfolding gives back the reply exactly.
    expect(get(a, 'Diagnostic-Code')).toBe(`smtp; ${reply}`);
    // A run with no space has to be cut; only the inserted folding whitespace differs.
    expect(get(b, 'Diagnostic-Code')!.replace(/\s/g, '')).toBe(`smtp;550${token}`);
    expect(words(parsed.parts[0]!.text)).toContain(`mx1.dest.test said: ${reply}`);
    const headers = parsed.parts[2]!.headers!;
    expect(get(headers, 'X-Spaced')).toBe(`${'word '.repeat(600)}end`);
    expect(get(headers, 'X-Long')!.replace(/\s/g, '')).toBe('y'.repeat(3000));
  });

  it('flattens a multi-line SMTP reply into one field', () => {
    const dsn = buildDsn(
      input({ recipients: [{ address: 'a@dest.test', action: 'failed', status: '5.1.1', diagnostic: '550-5.1.1 first line\r\n550 5.1.1 second line' }] }),
    );
    expectWellFormedLines(dsn);
    expect(get(parse(dsn).parts[1]!.groups![1]!, 'Diagnostic-Code')).toBe('smtp; 550-5.1.1 first line 550 5.1.1 second line');
  });

  it('does not label a local error as an SMTP reply', () => {
    const recipients: DsnRecipient[] = [{ address: 'a@dest.test', action: 'failed', status: '4.4.1', diagnostic: 'connection refused (mx1.dest.test)' }];
    const parsed = parse(buildDsn(input({ recipients })));
    expect(get(parsed.parts[1]!.groups![1]!, 'Diagnostic-Code')).toBe('X-Mailfleet; connection refused (mx1.dest.test)');
    expect(get(parsed.parts[1]!.groups![1]!, 'Remote-MTA')).toBeUndefined();
    expect(words(parsed.parts[0]!.text)).toContain('<a@dest.test>: delivery failed, gave up retrying (4.4.1) Reason: connection refused (mx1.dest.test)');
  });

  it('carries SMTPUTF8 addresses and headers without breaking the report', () => {
    const dsn = buildDsn(
      input({
        sender: '<rené@exämple.test>',
        recipients: [{ address: 'josé+tag@dëst.test', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 unknown', remoteMta: 'mx.xn--dst-jma.test' }],
        originalHeaders: Buffer.from('From: rené@exämple.test\r\nSubject: Grüße\r\n\r\nbody', 'utf8'),
      }),
    );
    expectWellFormedLines(dsn);
    const parsed = parse(dsn);
    expect(parsed.defects).toEqual([]);
    // RFC 6532 allows UTF-8 in the To: of a message to an SMTPUTF8 address.
    expect(get(parsed.headers, 'To')).toBe('<rené@exämple.test>');
    expect(parsed.parts.map((p) => p.contentType)).toEqual(['text/plain', 'message/delivery-status', 'message/global-headers']);
    // RFC 6533 utf-8-addr-xtext keeps the delivery-status part ASCII; '+' is escaped too.
    expect(get(parsed.parts[1]!.groups![1]!, 'Final-Recipient')).toBe('utf-8; jos\\x{E9}\\x{2B}tag@d\\x{EB}st.test');
    expect(words(parsed.parts[0]!.text)).toContain('<josé+tag@dëst.test>: delivery failed permanently (5.1.1)');
    expect(get(parsed.parts[2]!.headers!, 'Subject')).toBe('Grüße');
  });

  it('derives a boundary per DSN that no part can contain', () => {
    const first = buildDsn(input()).toString('latin1');
    const boundary = /boundary="([^"]+)"/.exec(first)![1]!;
    expect(boundary).not.toBe(/boundary="([^"]+)"/.exec(buildDsn(input({ messageId: '<dsn-2@relay.example>' })).toString('latin1'))![1]);

    // A malformed original header line that is exactly that delimiter must not split the report.
    const hostile = buildDsn(input({ originalHeaders: Buffer.from(`Subject: hi\r\n--${boundary}\r\nX-After: 1\r\n\r\n`) }));
    expect(/boundary="([^"]+)"/.exec(hostile.toString('latin1'))![1]).not.toBe(boundary);
    const parsed = parse(hostile);
    expect(parsed.parts.map((p) => p.contentType)).toEqual(['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
    expect(parsed.parts[1]!.groups).toHaveLength(3);
  });

  it('refuses input that cannot make a valid report', () => {
    expect(() => buildDsn(input({ sender: '<>' }))).toThrow(/null sender/);
    expect(() => buildDsn(input({ recipients: [] }))).toThrow(/at least one recipient/);
    expect(() => buildDsn(input({ recipients: [{ ...delayed, status: '5.1.1' }] }))).toThrow(/does not fit/);
    expect(() => buildDsn(input({ recipients: [{ address: 'a@dest.test', action: 'failed', status: '550' }] }))).toThrow(/does not fit/);
    expect(() => buildDsn(input({ now: new Date('nonsense') }))).toThrow(/valid Date/);
  });
});

describe('mayBounce', () => {
  it('never bounces to the null sender', () => {
    expect(mayBounce('')).toBe(false);
    expect(mayBounce('<>')).toBe(false);
    expect(mayBounce(' < > ')).toBe(false);
  });

  it('bounces to any other sender', () => {
    expect(mayBounce('app@example.test')).toBe(true);
    expect(mayBounce('<app@example.test>')).toBe(true);
    expect(mayBounce('MAILER-DAEMON@example.test')).toBe(true);
  });
});
