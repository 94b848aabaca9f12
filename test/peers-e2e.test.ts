/**
 * End to end against real peers: swaks (STARTTLS + AUTH) into the relay and out through a
 * real Postfix smarthost; the `mx` route against dnsmasq (preference order, fallback, null
 * MX, NXDOMAIN, implicit MX); Postfix as a client of the relay; and swaks as an open-relay
 * prober. Exact bytes are read at a scripted sink or in the relay's file-route outbox.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { binary, describePeer } from './peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq, type Dnsmasq } from './peers/dnsmasq.js';
import { canConnect } from './peers/ports.js';
import { POSTFIX_BINARIES, startPostfix, type PostfixInstance } from './peers/postfix.js';
import { run } from './peers/proc.js';
import { startScriptedSink, type ReceivedMessage, type ScriptedSink } from './peers/scripted-sink.js';
import { runSwaks, SWAKS_BINARIES } from './peers/swaks.js';
import { useTeardown } from './peers/teardown.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const RETRY = { minBackoff: '200ms', maxBackoff: '400ms' };
const PYTHON = '/usr/bin/python3';

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/** A temp dir for swaks --data files, removed in afterAll. */
function useDataDir(): () => string {
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
function dataFile(dir: string, name: string, lines: string[]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, lines.join('\n'));
  return `@${file}`;
}

/** What swaks puts on the wire for such a file (before dot-stuffing): CRLF lines. */
const wireMessage = (lines: string[]): string => lines.map((l) => `${l}\r\n`).join('');

/**
 * The message swaks actually sent, read back from its transcript (" -> " lines, " ~> " under
 * TLS) between the 354 reply and the lone ".", with dot-stuffing undone.
 */
function swaksSentMessage(stdout: string): string {
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
function headerFields(block: string): string[] {
  if (block === '') return [];
  expect(block.endsWith('\r\n')).toBe(true);
  return block.slice(0, -2).split(/\r\n(?![ \t])/).map((f) => `${f}\r\n`);
}

/**
 * Asserts that `raw` is `sent` with only header fields put in front, and returns them:
 * every byte of the original (header and body) arrived unchanged.
 */
function prependedFields(raw: string, sent: string): string[] {
  expect(raw.endsWith(sent), `the delivered message ends with what was sent\n--- delivered ---\n${raw}\n--- sent ---\n${sent}`).toBe(true);
  return headerFields(raw.slice(0, raw.length - sent.length));
}

const DATE = String.raw`(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [ \d]\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}(?: \(\w+\))?`;

/** The Received field the relay writes (relay/headers.ts receivedHeader). */
function relayReceived(o: { helo: string; protocol: string; tls: boolean; rcpt: string }): RegExp {
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
function postfixReceived(o: { helo: string; by: string; protocol: string; rcpt: string }): RegExp {
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
async function scrape(r: TestRelay): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${r.httpPort}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** Sum of a counter's samples whose labels include `labels`, e.g. `result="deferred"`. */
async function counter(r: TestRelay, name: string, labels: string): Promise<number> {
  return (await scrape(r))
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && l.includes(labels))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

const deliveries = (r: TestRelay, labels: string) => counter(r, 'mailfleet_relay_deliveries_total', labels);

/** Python's email package reads the DSN: an independent parser (as in test/delivery.test.ts). */
function parseDsn(raw: Buffer): { contentType: string; subject: string; groups: Record<string, string>[]; returned: string } {
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
async function runSwaksAuth(args: string[], user: string, password: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await run(binary('swaks'), [...args, '--auth', 'PLAIN', '--auth-user', user], { timeoutMs: 30_000, input: `${password}\n` });
  return { code, stdout, stderr };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------
// 1. swaks --tls --auth into the relay, out through a real Postfix to a scripted sink
// ---------------------------------------------------------------------------------------

describePeer(
  'e2e: swaks (STARTTLS + AUTH) -> relay -> smarthost Postfix -> sink',
  [...SWAKS_BINARIES, ...POSTFIX_BINARIES, PYTHON],
  () => {
    const dataDir = useDataDir();
    let sink: ScriptedSink;
    let postfix: PostfixInstance;
    let relay: TestRelay;

    beforeAll(async () => {
      sink = await startScriptedSink({ hostname: 'final.dest.test' });
      // The default mynetworks (127.0.0.0/8) lets the relay on 127.0.0.1 relay through it.
      postfix = await startPostfix({ relayhost: `127.0.0.1:${sink.port}`, hostname: 'mx.dest.test' });
      relay = await startTestRelay({
        delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: postfix.port, tls: 'none' } },
        retry: RETRY,
      });
    });
    afterAll(async () => {
      await relay?.stop();
      await postfix?.stop();
      await sink?.stop();
    });

    const swaksIn = (rcpt: string, data: string) =>
      runSwaksAuth(
        ['--server', '127.0.0.1', '--port', String(relay.ports.submission), '--helo', 'swaks.client.test', '--tls', '--from', 'alice@client.test', '--to', rcpt, '--data', data],
        relay.user,
        relay.password,
      );

    async function arrived(rcpt: string): Promise<ReceivedMessage> {
      await waitFor(() => sink.messages.some((m) => m.envelope.to.includes(rcpt)), `the message for ${rcpt} at the sink`, 15_000);
      return sink.messages.find((m) => m.envelope.to.includes(rcpt))!;
    }

    it('delivers the exact bytes swaks sent, with only the relay\'s and Postfix\'s Received in front', async () => {
      const rcpt = 'bob@dest.test';
      const lines = [
        'Date: Tue, 03 Mar 2026 10:00:00 +0000',
        'From: Alice Example <alice@client.test>',
        'To: Bob <bob@dest.test>',
        'Subject: end to end through real peers,',
        '\tfolded with a tab',
        'Message-ID: <e2e-full-headers@client.test>',
        'X-Custom:   spaces kept  ',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=us-ascii',
        '',
        'First line.',
        '.a line that starts with a dot',
        '..two dots',
        '.',
        'From the middle of a line, mbox would quote this',
        '',
        '   indented line with trailing blanks   ',
        `a long line: ${'x'.repeat(900)}`,
        'last line',
      ];
      const r = await swaksIn(rcpt, dataFile(dataDir(), 'full.eml', lines));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/TLS started/);
      expect(r.stdout).toMatch(/^<~ +235 2\.7\.0 Authentication successful/m);
      const sent = swaksSentMessage(r.stdout);
      expect(sent).toBe(wireMessage(lines));
      const queuedAs = /250 2\.0\.0 Ok: queued as (\S+)/.exec(r.stdout)?.[1];
      expect(queuedAs).toBeDefined();

      const msg = await arrived(rcpt);
      expect(msg.envelope).toEqual({ from: 'alice@client.test', to: [rcpt] });
      const fields = prependedFields(msg.raw.toString('latin1'), sent);
      expect(fields, fields.join('')).toHaveLength(2);
      expect(fields[0]).toMatch(postfixReceived({ helo: 'relay.test', by: 'mx.dest.test', protocol: 'ESMTP', rcpt }));
      const relayField = relayReceived({ helo: 'swaks.client.test', protocol: 'ESMTPSA', tls: true, rcpt });
      expect(fields[1]).toMatch(relayField);
      expect(relayField.exec(fields[1]!)?.groups?.id).toBe(queuedAs);

      await waitFor(async () => (await relay.spooled()).length === 0, 'the relay spool to empty');
      await waitFor(async () => (await postfix.queueCount()) === 0, 'the Postfix queue to empty');
      expect(postfix.maillog()).toMatch(/status=sent/);
    });

    it('adds Message-ID and Date (relay) only where swaks left them out; nothing else changes', async () => {
      const rcpt = 'carol@dest.test';
      const lines = ['From: alice@client.test', 'To: carol@dest.test', 'Subject: no Message-ID, no Date', '', 'Body without', 'those headers.'];
      const r = await swaksIn(rcpt, dataFile(dataDir(), 'bare.eml', lines));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const sent = swaksSentMessage(r.stdout);
      expect(sent).toBe(wireMessage(lines));
      const queuedAs = /250 2\.0\.0 Ok: queued as (\S+)/.exec(r.stdout)?.[1];

      const msg = await arrived(rcpt);
      const fields = prependedFields(msg.raw.toString('latin1'), sent);
      expect(fields.map((f) => f.slice(0, f.indexOf(':'))), fields.join('')).toEqual(['Received', 'Received', 'Message-ID', 'Date']);
      expect(fields[0]).toMatch(postfixReceived({ helo: 'relay.test', by: 'mx.dest.test', protocol: 'ESMTP', rcpt }));
      expect(fields[1]).toMatch(relayReceived({ helo: 'swaks.client.test', protocol: 'ESMTPSA', tls: true, rcpt }));
      expect(fields[2]).toBe(`Message-ID: <${queuedAs}@relay.test>\r\n`);
      expect(fields[3]).toMatch(new RegExp(`^Date: ${DATE}\\r\\n$`));
    });
  },
  { root: true },
);

// ---------------------------------------------------------------------------------------
// 2. The mx route against dnsmasq
// ---------------------------------------------------------------------------------------

describePeer('e2e: mx route with dnsmasq', [...DNSMASQ_BINARIES, PYTHON], () => {
  const defer = useTeardown();
  let dns: Dnsmasq;

  beforeAll(async () => {
    dns = await startDnsmasq({
      mx: [
        { domain: 'dest.test', host: 'mx1.dest.test', preference: 10 },
        // dnsmasq answers in reverse order of declaration: least preferred first, so the relay
        // must sort by preference rather than take the order of the answer.
        { domain: 'fallback.test', host: 'dead.fallback.test', preference: 10 },
        { domain: 'fallback.test', host: 'good.fallback.test', preference: 20 },
        { domain: 'fallback.test', host: 'trap.fallback.test', preference: 30 },
        { domain: 'sender.test', host: 'mx.sender.test', preference: 10 },
      ],
      hosts: [
        { name: 'mx1.dest.test', address: '127.0.0.1' },
        { name: 'dead.fallback.test', address: '127.0.0.2' },
        { name: 'good.fallback.test', address: '127.0.0.1' },
        { name: 'trap.fallback.test', address: '127.0.0.3' },
        { name: 'mx.sender.test', address: '127.0.0.1' },
        // No MX, only an address: implicit MX (RFC 5321 5.1).
        { name: 'implicit.test', address: '127.0.0.1' },
      ],
      nullMx: ['nomail.test'],
    });
  });
  afterAll(async () => {
    await dns?.stop();
  });

  const MSG = (subject: string, to: string) =>
    `From: app@sender.test\r\nTo: ${to}\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@sender.test>\r\n\r\nHello over the mx route.\r\n`;

  async function setup() {
    const sink = await startScriptedSink({ hostname: 'mx.peer.test' });
    defer(sink.stop);
    const relay = await startTestRelay({
      delivery: { route: { type: 'mx', dnsServers: [dns.server], port: sink.port } },
      retry: RETRY,
    });
    defer(relay.stop);
    return { sink, relay };
  }

  /** Sends, waits for the spool to empty, and returns the DSN (the only message at the sink). */
  async function expectImmediateBounce(relay: TestRelay, sink: ScriptedSink, rcpt: string, subject: string) {
    const started = Date.now();
    expect(await submit(relay.ports.open!, 'app@sender.test', [rcpt], MSG(subject, rcpt))).toMatch(/^250/);
    await sink.waitForMessages(1, 10_000);
    const elapsed = Date.now() - started;
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    // Longer than maxBackoff: a retry of the original or a second DSN would show by now.
    await sleep(600);
    expect(sink.messages).toHaveLength(1);
    // The DSN was the only connection: no delivery attempt was made for the recipient.
    expect(sink.connections).toBe(1);
    expect(await deliveries(relay, 'result="deferred"')).toBe(0);
    expect(await deliveries(relay, 'result="bounced"')).toBe(1); // the original's recipient
    expect(await deliveries(relay, 'result="delivered"')).toBe(1); // the DSN
    const dsn = sink.messages[0]!;
    expect(dsn.envelope).toEqual({ from: '', to: ['app@sender.test'] });
    const parsed = parseDsn(dsn.raw);
    expect(parsed.contentType).toMatch(/^multipart\/report; report-type=delivery-status/);
    expect(parsed.groups[1]).toMatchObject({ 'final-recipient': `rfc822; ${rcpt}`, action: 'failed' });
    expect(parsed.returned).toContain(`Subject: ${subject}`);
    return { parsed, raw: dsn.raw.toString('latin1'), elapsed };
  }

  it('delivers to the domain\'s MX host', async () => {
    const { sink, relay } = await setup();
    // dest.test has no address of its own: only the MX can have led to the sink.
    await expect(dns.resolver().resolve4('dest.test')).rejects.toMatchObject({ code: 'ENODATA' });
    expect(await submit(relay.ports.open!, 'app@sender.test', ['rcpt@dest.test'], MSG('mx', 'rcpt@dest.test'))).toMatch(/^250/);
    await sink.waitForMessages(1, 10_000);
    expect(sink.messages[0]!.envelope).toEqual({ from: 'app@sender.test', to: ['rcpt@dest.test'] });
    expect(sink.messages[0]!.raw.toString()).toMatch(/\r\n\r\nHello over the mx route\.\r\n$/);
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    expect(await deliveries(relay, 'result="delivered"')).toBe(1);
  });

  it('falls back to the next MX in preference order when the first refuses connections', async () => {
    const { sink, relay } = await setup();
    // The DNS answer does not list the most preferred host first (see the dnsmasq records).
    const answer = await dns.resolver().resolveMx('fallback.test');
    expect(answer.map((a) => a.priority)).not.toEqual([10, 20, 30]);
    // 127.0.0.2 is loopback on Linux, but nothing listens there on the sink's port: refused.
    expect(await canConnect(sink.port, '127.0.0.2')).toBe(false);
    // The least preferred MX is a trap that counts connections and refuses with 554.
    let trapped = 0;
    const trap = net.createServer((socket) => {
      trapped++;
      socket.on('error', () => undefined); // the liveness probe below resets its connection
      socket.end('554 5.7.1 trap: the least preferred MX must not be tried\r\n');
    });
    await new Promise<void>((resolve, reject) => trap.once('error', reject).listen(sink.port, '127.0.0.3', () => resolve()));
    defer(() => new Promise<void>((r) => trap.close(() => r())));
    // The trap is live: had the relay tried it, it would have connected and met the 554.
    expect(await canConnect(sink.port, '127.0.0.3')).toBe(true);
    await waitFor(() => trapped === 1, 'the probe connection at the trap');
    trapped = 0;

    expect(await submit(relay.ports.open!, 'app@sender.test', ['rcpt@fallback.test'], MSG('fallback', 'rcpt@fallback.test'))).toMatch(/^250/);
    await sink.waitForMessages(1, 10_000);
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    expect(sink.messages[0]!.envelope).toEqual({ from: 'app@sender.test', to: ['rcpt@fallback.test'] });
    // Delivered on the first attempt (fallback within one attempt, not a deferral and retry).
    expect(await deliveries(relay, 'result="deferred"')).toBe(0);
    expect(await deliveries(relay, 'result="delivered"')).toBe(1);
    expect(trapped).toBe(0);
    expect(sink.messages).toHaveLength(1);
  });

  it('bounces a null MX domain (RFC 7505) at once with one DSN and no delivery attempt', async () => {
    const { sink, relay } = await setup();
    expect((await dns.resolver().resolveMx('nomail.test')).map(({ exchange, priority }) => ({ exchange, priority }))).toEqual([{ exchange: '', priority: 0 }]);
    const { parsed, elapsed } = await expectImmediateBounce(relay, sink, 'someone@nomail.test', 'nullmx');
    expect(parsed.groups[1]!.status).toBe('5.1.10');
    expect(parsed.groups[1]!['diagnostic-code']).toMatch(/null MX/);
    expect(parsed.subject).toMatch(/Undelivered Mail Returned to Sender/);
    expect(elapsed).toBeLessThan(5_000);
  });

  it('bounces a domain that does not exist (NXDOMAIN)', async () => {
    const { sink, relay } = await setup();
    await expect(dns.resolver().resolveMx('no-such-domain.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    const { parsed } = await expectImmediateBounce(relay, sink, 'someone@no-such-domain.test', 'nxdomain');
    expect(parsed.groups[1]!.status).toBe('5.1.2');
    expect(parsed.groups[1]!['diagnostic-code']).toMatch(/does not exist|NXDOMAIN/);
  });

  it('delivers to a domain with no MX but an address record (implicit MX)', async () => {
    const { sink, relay } = await setup();
    await expect(dns.resolver().resolveMx('implicit.test')).rejects.toMatchObject({ code: 'ENODATA' });
    expect(await submit(relay.ports.open!, 'app@sender.test', ['rcpt@implicit.test'], MSG('implicit', 'rcpt@implicit.test'))).toMatch(/^250/);
    await sink.waitForMessages(1, 10_000);
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    expect(sink.messages[0]!.envelope).toEqual({ from: 'app@sender.test', to: ['rcpt@implicit.test'] });
    expect(await deliveries(relay, 'result="delivered"')).toBe(1);
    expect(await deliveries(relay, 'result="bounced"')).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------
// 3. Postfix as a client of the relay
// ---------------------------------------------------------------------------------------

describePeer(
  'e2e: swaks -> Postfix (client) -> relay -> file outbox',
  [...SWAKS_BINARIES, ...POSTFIX_BINARIES],
  () => {
    const defer = useTeardown();
    const dataDir = useDataDir();

    it('relays through Postfix into the relay; the outbox holds the message intact with Postfix\'s Received', async () => {
      const relay = await startTestRelay({ retry: RETRY });
      defer(relay.stop);
      const postfix = await startPostfix({ relayhost: `127.0.0.1:${relay.ports.open}`, hostname: 'client.peer.test' });
      defer(postfix.stop);

      const rcpt = 'dave@dest.test';
      const lines = [
        'Date: Tue, 03 Mar 2026 11:00:00 +0000',
        'From: App <app@client.test>',
        'To: dave@dest.test',
        'Subject: through Postfix into mailfleet',
        'Message-ID: <e2e-postfix-client@client.test>',
        '',
        'Hello through Postfix.',
        '.leading dot survives two hops',
        '',
        'Bye.',
      ];
      const r = await runSwaks(['--server', '127.0.0.1', '--port', String(postfix.port), '--helo', 'app.client.test', '--from', 'app@client.test', '--to', rcpt, '--data', dataFile(dataDir(), 'pf.eml', lines)]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const sent = swaksSentMessage(r.stdout);
      expect(sent).toBe(wireMessage(lines));

      await waitFor(() => relay.delivered().length === 1, 'the message in the outbox', 15_000);
      const fields = prependedFields(relay.delivered()[0]!.toString('latin1'), sent);
      expect(fields, fields.join('')).toHaveLength(2);
      const relayField = relayReceived({ helo: 'client.peer.test', protocol: 'ESMTP', tls: false, rcpt });
      expect(fields[0]).toMatch(relayField);
      expect(fields[1]).toMatch(postfixReceived({ helo: 'app.client.test', by: 'client.peer.test', protocol: 'ESMTP', rcpt }));

      // Postfix logged the relay's queue id from its 250 reply: the two hops are one message.
      const relayId = relayField.exec(fields[0]!)?.groups?.id;
      await waitFor(async () => (await postfix.queueCount()) === 0, 'the Postfix queue to empty');
      expect(postfix.maillog()).toMatch(new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${relay.ports.open}.*status=sent \\(250 2\\.0\\.0 Ok: queued as ${relayId}\\)`));
      await waitFor(async () => (await relay.spooled()).length === 0, 'the relay spool to empty');
    });
  },
  { root: true },
);

// ---------------------------------------------------------------------------------------
// 4. Open-relay check with swaks
// ---------------------------------------------------------------------------------------

describePeer('e2e: swaks open-relay probe', [...SWAKS_BINARIES], () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay({
      retry: RETRY,
      listeners: [
        // Loopback is not trusted on either: swaks on 127.0.0.1 is a stranger here.
        { name: 'stranger', address: '127.0.0.1', port: 0, tls: 'none', auth: 'none', trustedNetworks: ['10.99.0.0/16'] },
        { name: 'optional', address: '127.0.0.1', port: 0, tls: 'starttls', auth: 'optional', trustedNetworks: ['192.0.2.0/24'] },
        { name: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls', auth: 'required' },
      ],
    });
  });
  afterAll(async () => {
    await relay?.stop();
  });

  const probe = (listener: string, extra: string[] = []) =>
    runSwaks(['--server', '127.0.0.1', '--port', String(relay.ports[listener]), '--helo', 'prober.outside.test', '--from', 'spammer@outside.test', '--to', 'victim@elsewhere.test', ...extra]);

  it('refuses an unauthenticated stranger at RCPT (swaks exit 24) and queues nothing', async () => {
    for (const [listener, extra] of [['stranger', []], ['optional', ['--tls']]] as const) {
      const r = await probe(listener, [...extra]);
      expect(r.code, `${listener}: ${r.stdout}${r.stderr}`).toBe(24); // swaks: RCPT refused
      // swaks marks an error reply "<**" ("<~*" under TLS).
      expect(r.stdout).toMatch(/^<\S* +554 5\.7\.1 <victim@elsewhere\.test>: Relay access denied/m);
      expect(r.stdout).not.toMatch(/ [-~]> DATA/);
    }
    // The AUTH-required port stops it one step earlier, at MAIL FROM (swaks exit 23).
    const sub = await probe('submission', ['--tls']);
    expect(sub.code, sub.stdout + sub.stderr).toBe(23);
    expect(sub.stdout).toMatch(/530 5\.7\.0 Authentication required/);

    expect(await relay.spooled()).toEqual([]);
    expect(relay.delivered()).toEqual([]);
    expect(await counter(relay, 'mailfleet_relay_smtp_rejections_total', 'reason="relay_denied"')).toBe(2);
  });

  it('control: the same listener relays once the client authenticates', async () => {
    const r = await runSwaksAuth(
      ['--server', '127.0.0.1', '--port', String(relay.ports.optional), '--helo', 'app.client.test', '--tls', '--from', 'app@client.test', '--to', 'victim@elsewhere.test'],
      relay.user,
      relay.password,
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    await waitFor(() => relay.delivered().length === 1, 'the authenticated message in the outbox');
  });
});
