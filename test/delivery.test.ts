/**
 * The queue and delivery path against a scripted SMTP destination: retries with backoff,
 * per-recipient outcomes, exactly one DSN per message, none for the null sender, expiry,
 * delay notices, connection reuse and per-destination concurrency.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { startScriptedSink, type ScriptedSink, type SinkReply } from './peers/scripted-sink.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { SmtpTalk, submit } from './support/smtp-talk.js';

const MSG = (subject: string) => `From: app@example.test\r\nTo: r@dest.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.test>\r\n\r\nHello.\r\n`;

let relay: TestRelay | undefined;
let sink: ScriptedSink | undefined;
afterEach(async () => {
  await relay?.stop();
  await sink?.stop();
  relay = sink = undefined;
});

async function setup(opts: { replies?: (ctx: { attempt: number; rcpt: string; from: string }) => SinkReply | undefined; retry?: object; delivery?: object }) {
  sink = await startScriptedSink({ replies: opts.replies });
  relay = await startTestRelay({
    delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' }, ...opts.delivery },
    retry: { minBackoff: '200ms', maxBackoff: '400ms', ...opts.retry },
  });
  return { relay, sink };
}

async function noticeCounter(r: TestRelay, result: string): Promise<number> {
  const line = (await r.metricsText()).split('\n').find((l) => l.startsWith(`mailfleet_relay_notices_total{result="${result}"} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

async function counter(r: TestRelay, labels: string): Promise<number> {
  const text = await r.metricsText();
  const line = text.split('\n').find((l) => l.startsWith(`mailfleet_relay_deliveries_total{${labels}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** Python's email package reads the DSN's delivery-status groups: an independent parser. */
function parseDsn(raw: Buffer): { contentType: string; groups: Record<string, string>[] } {
  const script = `
import email, json, sys
m = email.message_from_bytes(sys.stdin.buffer.read())
status = [p for p in m.walk() if p.get_content_type() == 'message/delivery-status'][0]
groups = [dict((k.lower(), str(v)) for k, v in g.items()) for g in status.get_payload()]
print(json.dumps({'contentType': m.get('content-type'), 'groups': groups}))`;
  const out = spawnSync('/usr/bin/python3', ['-c', script], { input: raw });
  if (out.status !== 0) throw new Error(out.stderr.toString());
  return JSON.parse(out.stdout.toString());
}

describe('delivery through a smarthost', () => {
  it('defers on 451 and delivers after the backoff', async () => {
    const { relay, sink } = await setup({ replies: ({ attempt }) => (attempt <= 2 ? { code: 451, message: '4.7.1 try again later' } : undefined) });
    const started = Date.now();
    expect(await submit(relay.ports.open!, 'app@example.test', ['r@dest.test'], MSG('retry'))).toMatch(/^250/);
    await sink.waitForMessages(1, 10_000);
    // Two backoffs of at least 180 ms (200 ms less up to 10% jitter) passed.
    expect(Date.now() - started).toBeGreaterThanOrEqual(360);
    expect(sink.messages[0]!.envelope).toEqual({ from: 'app@example.test', to: ['r@dest.test'] });
    // The sink has the message once it answered 250; the relay counts it when that reply arrives.
    await waitFor(async () => (await counter(relay, 'result="delivered"')) === 1, 'the delivery counted');
    expect(await counter(relay, 'result="deferred"')).toBe(2);
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    expect(sink.messages).toHaveLength(1);
  });

  it('delivers to accepted recipients and sends exactly one DSN for the refused one', async () => {
    const { relay, sink } = await setup({ replies: ({ rcpt }) => (rcpt.startsWith('gone') ? { code: 550, message: '5.1.1 <gone@dest.test>: user unknown' } : undefined) });
    expect(await submit(relay.ports.open!, 'app@example.test', ['ok@dest.test', 'gone@dest.test'], MSG('partial'))).toMatch(/^250/);
    await sink.waitForMessages(2, 10_000);
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    const [original, dsn] = sink.messages;
    expect(original!.envelope).toEqual({ from: 'app@example.test', to: ['ok@dest.test'] });
    expect(dsn!.envelope).toEqual({ from: '', to: ['app@example.test'] });
    const parsed = parseDsn(dsn!.raw);
    expect(parsed.contentType).toMatch(/multipart\/report; report-type=delivery-status/);
    expect(parsed.groups[1]).toMatchObject({ 'final-recipient': 'rfc822; gone@dest.test', action: 'failed', status: '5.1.1' });
    expect(parsed.groups[1]!['diagnostic-code']).toMatch(/smtp; 550 5\.1\.1 <gone@dest\.test>: user unknown/);
    expect(dsn!.raw.toString()).toContain('Subject: partial');
    expect(dsn!.raw.toString()).not.toContain('Hello.');
    // Nothing more can arrive: the spool is empty, and the relay counted one bounce and one
    // delivery of the sender's mail, the DSN's delivery apart, no deferral that a retry would follow.
    expect(await counter(relay, 'result="bounced"')).toBe(1);
    expect(await counter(relay, 'result="delivered"')).toBe(1);
    expect(await counter(relay, 'result="deferred"')).toBe(0);
    expect(await noticeCounter(relay, 'delivered')).toBe(1);
    expect(sink.messages).toHaveLength(2);
  });

  it("counts a DSN that cannot reach a noreply@ sender as a notice, not as a second bounce of the sender's mail", async () => {
    const { relay, sink } = await setup({ replies: ({ rcpt }) => (rcpt.startsWith('gone') || rcpt.startsWith('noreply') ? { code: 550, message: '5.1.1 user unknown' } : undefined) });
    expect(await submit(relay.ports.open!, 'noreply@example.test', ['gone@dest.test'], MSG('noreply'))).toMatch(/^250/);
    await waitFor(async () => (await noticeCounter(relay, 'bounced')) === 1, "the DSN's bounce, counted as a notice");
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    // The bounce rate the alert reads is 1 of 1 recipient, not 2 of 2 outcomes.
    expect(await counter(relay, 'result="bounced"')).toBe(1);
    expect(await counter(relay, 'result="delivered"')).toBe(0);
    expect(sink.messages).toHaveLength(0);
  });

  it('counts outcomes per configured sender domain, the rest as other, the DSNs in neither', async () => {
    sink = await startScriptedSink({ replies: ({ rcpt }) => (rcpt.startsWith('gone') ? { code: 550, message: '5.1.1 user unknown' } : undefined) });
    relay = await startTestRelay({ senderDomains: [{ domain: 'example.test' }], delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } } });
    expect(await submit(relay.ports.open!, 'app@news.example.test', ['ok@dest.test', 'gone@dest.test'], MSG('configured'))).toMatch(/^250/);
    expect(await submit(relay.ports.open!, 'app@elsewhere.test', ['ok2@dest.test'], MSG('unconfigured'))).toMatch(/^250/);
    await sink.waitForMessages(3, 10_000); // two originals and the DSN
    await waitFor(async () => (await relay!.spooled()).length === 0, 'the spool to empty');
    const text = await relay.metricsText();
    const series = (labels: string) => Number(text.split('\n').find((l) => l.startsWith(`mailfleet_relay_sender_domain_deliveries_total{${labels}} `))?.split(' ').pop() ?? 0);
    expect(series('sender_domain="example.test",result="delivered"')).toBe(1);
    expect(series('sender_domain="example.test",result="bounced"')).toBe(1);
    expect(series('sender_domain="other",result="delivered"')).toBe(1);
    expect(text).not.toMatch(/sender_domain="(news\.example\.test|elsewhere\.test|)"/);
  });

  it('never sends a DSN for a message from the null sender', async () => {
    const { relay, sink } = await setup({ replies: () => ({ code: 550, message: '5.1.1 user unknown' }) });
    expect(await submit(relay.ports.open!, '', ['gone@dest.test'], MSG('nullsender'))).toMatch(/^250/);
    // A DSN is stored before its original leaves the spool: with the spool empty and nothing
    // delivered, none was made.
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    expect(await counter(relay, 'result="bounced"')).toBe(1);
    expect(await counter(relay, 'result="delivered"')).toBe(0);
    expect(sink.messages).toHaveLength(0);
  });

  it('bounces a message whose lifetime passed with status 4.4.7, after a delay notice', async () => {
    const { relay, sink } = await setup({
      replies: ({ from }) => (from === '' ? undefined : { code: 451, message: '4.4.1 mailbox busy' }),
      retry: { lifetime: '1500ms', delayNoticeAfter: '300ms' },
    });
    expect(await submit(relay.ports.open!, 'app@example.test', ['slow@dest.test'], MSG('expire'))).toMatch(/^250/);
    await sink.waitForMessages(2, 10_000);
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    const [delay, final] = sink.messages.map((m) => ({ env: m.envelope, dsn: parseDsn(m.raw), raw: m.raw.toString() }));
    expect(delay!.env.to).toEqual(['app@example.test']);
    expect(delay!.dsn.groups[1]).toMatchObject({ action: 'delayed', status: '4.4.1' });
    expect(delay!.raw).toMatch(/Subject: Delayed Mail/);
    expect(final!.dsn.groups[1]).toMatchObject({ action: 'failed', status: '4.4.7' });
    expect(final!.dsn.groups[1]!['diagnostic-code']).toMatch(/expired.*4\.4\.1 mailbox busy/s);
    expect(sink.messages).toHaveLength(2);
  });

  it('reuses connections and keeps to the per-destination connection limit', async () => {
    const { relay, sink } = await setup({ delivery: { maxConnectionsPerDestination: 3 } });
    const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => submit(relay.ports.open!, 'app@example.test', [`r${i}@dest.test`], MSG(`bulk${i}`))));
    expect(replies.every((r) => r.startsWith('250'))).toBe(true);
    await sink.waitForMessages(40, 10_000);
    expect(sink.maxConcurrent).toBeLessThanOrEqual(3);
    expect(sink.connections).toBeLessThan(40);
  });

  it('defers when the smarthost refuses connections, and delivers once it is back', async () => {
    sink = await startScriptedSink();
    const port = sink.port;
    await sink.stop();
    relay = await startTestRelay({ delivery: { route: { type: 'smarthost', host: '127.0.0.1', port, tls: 'none' } }, retry: { minBackoff: '300ms', maxBackoff: '300ms' } });
    expect(await submit(relay.ports.open!, 'app@example.test', ['r@dest.test'], MSG('down'))).toMatch(/^250/);
    await waitFor(async () => (await counter(relay!, 'result="deferred"')) >= 1, 'a deferral');
    expect((await relay.spooled()).length).toBeGreaterThan(0);
    sink = await startScriptedSink({ port });
    await sink.waitForMessages(1, 10_000);
  });

  it('defers when the destination accepts the connection but never answers', async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      relay = await startTestRelay({
        delivery: { route: { type: 'smarthost', host: '127.0.0.1', port, tls: 'none' }, connectTimeout: '300ms', responseTimeout: '300ms' },
        retry: { minBackoff: '1h', maxBackoff: '1h' },
      });
      expect(await submit(relay.ports.open!, 'app@example.test', ['r@dest.test'], MSG('hang'))).toMatch(/^250/);
      await waitFor(async () => (await counter(relay!, 'result="deferred"')) === 1, 'a deferral after the timeout', 5_000);
      expect((await relay.spooled()).length).toBeGreaterThan(0);
      expect(await relay.queueStats()).toMatchObject({ deferred: 1, inflight: 0 });
    } finally {
      silent.close();
    }
  });

  it('passes BODY=8BITMIME on to a next hop that supports it (RFC 6152)', async () => {
    const seen: string[] = [];
    const server = new SMTPServer({
      authOptional: true,
      disableReverseLookup: true,
      logger: false,
      onMailFrom(address, _session, cb) {
        const args = address.args ? (address.args as Record<string, unknown>) : {};
        seen.push(String(args.BODY ?? 'none'));
        cb();
      },
      onData(stream, _session, cb) {
        stream.resume();
        stream.on('end', () => cb());
      },
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.server.address() as net.AddressInfo).port;
      relay = await startTestRelay({ delivery: { route: { type: 'smarthost', host: '127.0.0.1', port, tls: 'none' } } });
      const { talk } = await SmtpTalk.connect(relay.ports.open!);
      await talk.send('EHLO client.test');
      expect(await talk.send('MAIL FROM:<app@example.test> BODY=8BITMIME')).toMatch(/^250/);
      await talk.send('RCPT TO:<r@dest.test>');
      expect(await talk.data('Subject: Grüße\r\n\r\nÄpfel und Öl\r\n')).toMatch(/^250/);
      await talk.quit();
      expect(await submit(relay.ports.open!, 'app@example.test', ['r@dest.test'], MSG('seven-bit'))).toMatch(/^250/);
      await waitFor(() => seen.length === 2, 'both messages at the next hop');
      expect(seen.sort()).toEqual(['8BITMIME', 'none']);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  /** A smarthost that takes AUTH only with `password` (none: with nothing) and keeps what it is sent. */
  async function authSmarthost(password?: string): Promise<{ port: number; delivered: string[]; close: () => Promise<void> }> {
    const delivered: string[] = [];
    const server = new SMTPServer({
      allowInsecureAuth: true,
      disableReverseLookup: true,
      logger: false,
      onAuth(auth, _session, cb) {
        if (password !== undefined && auth.password === password) return cb(null, { user: auth.username });
        cb(Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 }));
      },
      onData(stream, _session, cb) {
        let text = '';
        stream.on('data', (d: Buffer) => (text += d.toString()));
        stream.on('end', () => {
          delivered.push(text);
          cb();
        });
      },
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { port: (server.server.address() as net.AddressInfo).port, delivered, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  /** Reroutes the relay through the smarthost with `user:password` in a credentials file; returns the file. */
  async function routeWithCredentials(r: TestRelay, port: number, password: string): Promise<string> {
    const credentials = path.join(r.dir, 'upstream');
    fs.writeFileSync(credentials, `user:${password}\n`);
    const config = JSON.parse(fs.readFileSync(path.join(r.dir, 'relay.yaml'), 'utf8'));
    fs.writeFileSync(path.join(r.dir, 'relay.yaml'), JSON.stringify({ ...config, delivery: { route: { type: 'smarthost', host: '127.0.0.1', port, tls: 'none', credentialsFile: credentials } } }));
    expect(await r.reload()).toBe(true);
    return credentials;
  }

  it('defers, never bounces, when the smarthost refuses the login (a rotated credential)', async () => {
    const smarthost = await authSmarthost();
    try {
      relay = await startTestRelay({ retry: { minBackoff: '1h', maxBackoff: '1h' } });
      await routeWithCredentials(relay, smarthost.port, 'old-password');
      for (let i = 0; i < 3; i++) expect(await submit(relay.ports.open!, 'app@example.test', [`r${i}@dest.test`], MSG(`auth${i}`))).toMatch(/^250/);
      await waitFor(async () => (await counter(relay!, 'result="deferred"')) === 3, 'three deferrals');
      expect(await counter(relay, 'result="bounced"')).toBe(0);
      expect(await relay.queueStats()).toMatchObject({ deferred: 3 });
    } finally {
      await smarthost.close();
    }
  });

  it('uses rotated smarthost credentials from the next connection on, without a restart or a config change', async () => {
    const smarthost = await authSmarthost('new-password');
    try {
      relay = await startTestRelay({ retry: { minBackoff: '300ms', maxBackoff: '300ms' } });
      const credentials = await routeWithCredentials(relay, smarthost.port, 'old-password');
      expect(await submit(relay.ports.open!, 'app@example.test', ['r@dest.test'], MSG('rotated'))).toMatch(/^250/);
      await waitFor(async () => (await counter(relay!, 'result="deferred"')) >= 1, 'a deferral with the old password');
      fs.writeFileSync(credentials, 'user:new-password\n');
      await waitFor(() => smarthost.delivered.some((m) => m.includes('rotated')), 'delivery with the new password');
      expect(await counter(relay, 'result="bounced"')).toBe(0);
    } finally {
      await smarthost.close();
    }
  });

  it('regroups waiting mail when a reload changes the route, and delivers it by the new one', async () => {
    sink = await startScriptedSink();
    const deadPort = sink.port;
    await sink.stop();
    relay = await startTestRelay({ delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: deadPort, tls: 'none' } }, retry: { minBackoff: '300ms', maxBackoff: '300ms' } });
    expect(await submit(relay.ports.open!, 'app@example.test', ['a@one.test', 'b@two.test'], MSG('rerouted'))).toMatch(/^250/);
    await waitFor(async () => (await counter(relay!, 'result="deferred"')) >= 2, 'a deferral');
    const config = JSON.parse(fs.readFileSync(path.join(relay.dir, 'relay.yaml'), 'utf8'));
    fs.writeFileSync(path.join(relay.dir, 'relay.yaml'), JSON.stringify({ ...config, delivery: { route: { type: 'file', dir: 'outbox' } } }));
    expect(await relay.reload()).toBe(true);
    await waitFor(() => relay!.delivered().length === 1, 'the message in the outbox');
    await waitFor(async () => (await relay!.spooled()).length === 0, 'the spool to empty');
  });

  it('keeps an idle connection for mail that trickles in, instead of a connection per message', async () => {
    const { relay, sink } = await setup({ delivery: { idleConnectionTime: '2s' } });
    for (let i = 0; i < 8; i++) {
      expect(await submit(relay.ports.open!, 'app@example.test', [`t${i}@dest.test`], MSG(`trickle${i}`))).toMatch(/^250/);
      await sink.waitForMessages(i + 1, 5_000);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(sink.connections).toBe(1);
  });

  it('keeps a recipient greylisted at RCPT deferred when DATA then fails for the others', async () => {
    sink = await startScriptedSink({
      replies: ({ rcpt }) => (rcpt.startsWith('grey') ? { code: 450, message: '4.2.0 greylisted, try again later' } : undefined),
      dataReply: ({ envelope }) => (envelope.from === '' ? undefined : { code: 554, message: '5.6.0 content rejected' }),
    });
    relay = await startTestRelay({ delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } }, retry: { minBackoff: '1h', maxBackoff: '1h' } });
    expect(await submit(relay.ports.open!, 'app@example.test', ['grey@dest.test', 'ok@dest.test'], MSG('mixed'))).toMatch(/^250/);
    // ok@ bounced on the DATA reply; grey@ keeps its own 450 and waits for its retry (the one
    // DSN for the message goes out when grey@ is final too).
    await waitFor(async () => (await counter(relay!, 'result="bounced"')) === 1, 'the bounce of ok@');
    expect(await counter(relay, 'result="deferred"')).toBe(1);
    expect(await relay.queueStats()).toMatchObject({ deferred: 1 });
    expect(sink.messages).toHaveLength(0);
  });

  it('defers every recipient when the server refuses MAIL FROM for now, though its PIPELINING answered the RCPTs 503', async () => {
    let refuse = true;
    sink = await startScriptedSink({ mailReply: () => (refuse ? { code: 452, message: '4.3.1 Insufficient system storage' } : undefined) });
    relay = await startTestRelay({ delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } }, retry: { minBackoff: '200ms', maxBackoff: '400ms' } });
    expect(await submit(relay.ports.open!, 'app@example.test', ['a@dest.test', 'b@dest.test'], MSG('storage'))).toMatch(/^250/);
    await waitFor(async () => (await counter(relay!, 'result="deferred"')) >= 2, 'both recipients deferred');
    expect(await counter(relay, 'result="bounced"')).toBe(0);
    expect((await relay.spooled())[0]!.recipients.map((r) => [r.status, r.statusCode])).toEqual([
      ['pending', '4.3.1'],
      ['pending', '4.3.1'],
    ]);
    refuse = false;
    await sink.waitForMessages(1, 5000);
    expect(sink.messages[0]!.envelope.to.sort()).toEqual(['a@dest.test', 'b@dest.test']);
  });

  it("bounces at once, 5.3.4, a message larger than the server's SIZE, instead of retrying it for its lifetime", async () => {
    sink = await startScriptedSink({ size: 4000 });
    relay = await startTestRelay({ delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } }, retry: { minBackoff: '200ms', maxBackoff: '400ms' } });
    expect(await submit(relay.ports.open!, 'app@example.test', ['big@dest.test'], MSG('big') + 'x'.repeat(8000) + '\r\n')).toMatch(/^250/);
    await waitFor(async () => (await counter(relay!, 'result="bounced"')) === 1, 'the bounce');
    expect(await counter(relay, 'result="deferred"')).toBe(0);
    // The DSN to the sender, through the same smarthost, says why.
    await sink.waitForMessages(1, 5000);
    const dsn = parseDsn(sink.messages[0]!.raw);
    expect(dsn.groups.find((g) => g['final-recipient'])).toMatchObject({ action: 'failed', status: '5.3.4' });
  });
});
