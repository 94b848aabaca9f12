// End to end: the mx route against dnsmasq (preference order, fallback, null MX, NXDOMAIN, implicit MX) to scripted sinks.
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePeer } from './peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq, type Dnsmasq } from './peers/dnsmasq.js';
import { canConnect } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { useTeardown } from './peers/teardown.js';
import { deliveries, notices, parseDsn, PYTHON, RETRY, sleep } from './support/e2e.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

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
    expect(await deliveries(relay, 'result="delivered"')).toBe(0);
    expect(await notices(relay, 'result="delivered"')).toBe(1); // the DSN, counted apart
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
