/**
 * Helpers of the end-to-end suites against real peers (peers-e2e-*.test.ts): swaks data files and
 * transcripts, the Received fields the relay and Postfix write, the relay's counters as scraped,
 * a DSN read by Python's email package, and swaks with AUTH.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect } from 'vitest';
import { binary } from '../peers/availability.js';
import { run } from '../peers/proc.js';
import type { TestRelay } from './relay.js';

export const RETRY = { minBackoff: '200ms', maxBackoff: '400ms' };
export const PYTHON = '/usr/bin/python3';

/** A temp dir for swaks --data files, removed in afterAll. */
export function useDataDir(): () => string {
  let dir: string | undefined;
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  return () => (dir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'mf-e2e-data-')));
}

/**
 * Writes a message for `swaks --data @file`. No trailing newline: swaks ends the DATA with
 * "\r\n." itself, so a trailing newline in the file would become an extra empty line.
 */
export function dataFile(dir: string, name: string, lines: string[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, lines.join('\n'));
  return `@${file}`;
}

/** What swaks puts on the wire for such a file (before dot-stuffing): CRLF lines. */
export const wireMessage = (lines: string[]): string => lines.map((l) => `${l}\r\n`).join('');

/**
 * The message swaks actually sent, read back from its transcript (" -> " lines, " ~> " under
 * TLS) between the 354 reply and the lone ".", with dot-stuffing undone.
 */
export function swaksSentMessage(stdout: string): string {
  // swaks prints each DATA line as sent, CRLF included: the transcript lines end in "\r".
  const lines = stdout.split('\n').map((l) => l.replace(/\r$/, ''));
  const start = lines.findIndex((l) => /^<[-~]\s+354[ -]/.test(l));
  if (start < 0) throw new Error(`no 354 reply in the swaks transcript:\n${stdout}`);
  const out: string[] = [];
  for (let i = start + 1; i < lines.length; i++) {
    const m = /^ [-~]>(?: (.*))?$/.exec(lines[i]!);
    if (!m) throw new Error(`unexpected swaks transcript line ${JSON.stringify(lines[i])}`);
    const line = m[1] ?? '';
    if (line === '.') return out.join('');
    out.push(`${line.startsWith('.') ? line.slice(1) : line}\r\n`);
  }
  throw new Error(`no end of DATA in the swaks transcript:\n${stdout}`);
}

/** Header fields (with their folded continuation lines, CRLF kept) of a header block. */
export function headerFields(block: string): string[] {
  if (block === '') return [];
  expect(block.endsWith('\r\n')).toBe(true);
  return block.slice(0, -2).split(/\r\n(?![ \t])/).map((f) => `${f}\r\n`);
}

/**
 * Asserts that `raw` is `sent` with only header fields put in front, and returns them:
 * every byte of the original (header and body) arrived unchanged.
 */
export function prependedFields(raw: string, sent: string): string[] {
  expect(raw.endsWith(sent), `the delivered message ends with what was sent\n--- delivered ---\n${raw}\n--- sent ---\n${sent}`).toBe(true);
  return headerFields(raw.slice(0, raw.length - sent.length));
}

export const DATE = String.raw`(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [ \d]\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}(?: \(\w+\))?`;

/** The Received field the relay writes (relay/headers.ts receivedHeader). */
export function relayReceived(o: { helo: string; protocol: string; tls: boolean; rcpt: string }): RegExp {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(
    `^Received: from ${esc(o.helo)} \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n` +
      `\\tby relay\\.test \\(mailfleet\\) with ${o.protocol} id (?<id>[0-9A-Z]+)\\r\\n` +
      (o.tls ? `\\t\\(using TLSv1\\.[23] with cipher [A-Z0-9_-]+\\)\\r\\n` : '') +
      `\\tfor <${esc(o.rcpt)}>;\\r\\n` +
      `\\t${DATE}\\r\\n$`,
  );
}

/** The Received field Postfix's smtpd writes. */
export function postfixReceived(o: { helo: string; by: string; protocol: string; rcpt: string }): RegExp {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(
    `^Received: from ${esc(o.helo)} \\((?:[^\\s()]+ )?\\[127\\.0\\.0\\.1\\]\\)\\r\\n` +
      `\\tby ${esc(o.by)} \\(Postfix\\) with ${o.protocol} id (?<id>[0-9A-Za-z]+)\\r\\n` +
      `\\tfor <${esc(o.rcpt)}>; ${DATE}\\r\\n$`,
  );
}

/**
 * The relay's /metrics as Prometheus scrapes it (the public interface: it holds the intake
 * and the delivery counters wherever in the process they live).
 */
export async function scrape(r: TestRelay): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${r.httpPort}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** Sum of a counter's samples whose labels include `labels`, e.g. `result="deferred"`. */
export async function counter(r: TestRelay, name: string, labels: string): Promise<number> {
  return (await scrape(r))
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && l.includes(labels))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

export const deliveries = (r: TestRelay, labels: string) => counter(r, 'mailfleet_relay_deliveries_total', labels);
/** The relay's own notices (DSNs, delay notices), counted apart from the senders' mail. */
export const notices = (r: TestRelay, labels: string) => counter(r, 'mailfleet_relay_notices_total', labels);

/** Python's email package reads the DSN: an independent parser (as in test/delivery.test.ts). */
export function parseDsn(raw: Buffer): { contentType: string; subject: string; groups: Record<string, string>[]; returned: string } {
  const script = `
import email, json, sys
m = email.message_from_bytes(sys.stdin.buffer.read())
status = [p for p in m.walk() if p.get_content_type() == 'message/delivery-status'][0]
groups = [dict((k.lower(), str(v)) for k, v in g.items()) for g in status.get_payload()]
returned = [p for p in m.walk() if p.get_content_type() in ('text/rfc822-headers', 'message/rfc822')]
print(json.dumps({'contentType': m.get('content-type'), 'subject': m.get('subject'), 'groups': groups,
                  'returned': returned[0].as_string() if returned else ''}))`;
  const out = spawnSync(PYTHON, ['-c', script], { input: raw });
  if (out.status !== 0) throw new Error(out.stderr.toString());
  return JSON.parse(out.stdout.toString()) as ReturnType<typeof parseDsn>;
}

/**
 * swaks with `--auth PLAIN --auth-user USER`, the password typed at swaks's prompt (stdin).
 * Not `--auth-password PASSWORD`: swaks parses that option with Getopt::Long as an optional
 * string, which takes a value starting with "-" for another option ("Unknown option: ..."),
 * even as `--auth-password=-x`. The test relay's password is 16 random base64url characters,
 * so 1 start in 64 it begins with "-" and swaks could not send it.
 */
export async function runSwaksAuth(args: string[], user: string, password: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await run(binary('swaks'), [...args, '--auth', 'PLAIN', '--auth-user', user], { timeoutMs: 30_000, input: `${password}\n` });
  return { code, stdout, stderr };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
