import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../test/peers/ports.js';
import { startTestRelay, waitFor, type TestRelay } from '../../test/support/relay.js';
import { SmtpTalk, submit } from '../../test/support/smtp-talk.js';
import { parseExposition, relaySignals, scrapeSignals } from './relay-metrics.js';

const MSG = (n: number) => `From: app@example.test\r\nTo: r@dest.test\r\nSubject: ${n}\r\nMessage-ID: <${n}@example.test>\r\n\r\nHello.\r\n`;

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** An HTTP server on a free loopback port, closed after the test. */
async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/metrics`;
}

async function relay(overrides: Parameters<typeof startTestRelay>[0]): Promise<TestRelay> {
  const r = await startTestRelay({ shutdown: { drainTimeout: '1s' }, ...overrides });
  cleanups.push(() => r.stop());
  return r;
}

describe('parsing the exposition', () => {
  it('reads samples past comments, HELP and TYPE lines, escaped label values, timestamps, NaN and Inf, and skips malformed lines', () => {
    const text = [
      '# HELP x_total A counter with a "quoted" help text',
      '# TYPE x_total counter',
      '# any other comment',
      '',
      'x_total{path="a\\"b\\\\c\\nd",code="200"} 7 1712345678000',
      'x_total{code = "500" , } 1e3',
      'no_labels 2.5\r',
      'gauge_nan NaN',
      'gauge_inf{le="+Inf"} +Inf',
      'gauge_neg -Inf',
      'broken{unterminated="x} 1',
      'broken{=""} 1',
      'broken_value abc',
      '{no_name="x"} 1',
    ].join('\n');
    const samples = parseExposition(text);
    expect(samples.slice(0, 3)).toEqual([
      { name: 'x_total', labels: { path: 'a"b\\c\nd', code: '200' }, value: 7 },
      { name: 'x_total', labels: { code: '500' }, value: 1000 },
      { name: 'no_labels', labels: {}, value: 2.5 },
    ]);
    expect(samples.slice(3).map((s) => [s.name, s.value])).toEqual([
      ['gauge_nan', NaN],
      ['gauge_inf', Infinity],
      ['gauge_neg', -Infinity],
    ]);
  });

  it('reads histograms, OpenMetrics exemplars and # EOF, and label values holding the format\'s own delimiters', () => {
    const text = [
      '# HELP d_seconds A histogram.',
      '# TYPE d_seconds histogram',
      'd_seconds_bucket{le="0.5"} 3 # {trace_id="abc"} 0.4 1712345678.1',
      'd_seconds_bucket{le="+Inf"} 5',
      'd_seconds_sum 2.25',
      'd_seconds_count 5',
      'odd{v="a}b,c=\\"d\\" # e",w="C:\\\\"} 1',
      '# EOF',
    ].join('\n');
    expect(parseExposition(text)).toEqual([
      { name: 'd_seconds_bucket', labels: { le: '0.5' }, value: 3 },
      { name: 'd_seconds_bucket', labels: { le: '+Inf' }, value: 5 },
      { name: 'd_seconds_sum', labels: {}, value: 2.25 },
      { name: 'd_seconds_count', labels: {}, value: 5 },
      { name: 'odd', labels: { v: 'a}b,c="d" # e', w: 'C:\\' }, value: 1 },
    ]);
  });

  it('takes messages due now only, sums sessions over listeners, and gives nothing for numbers it cannot trust', () => {
    const queue = 'mailfleet_relay_queue_messages{state="ready"} 12\nmailfleet_relay_queue_messages{state="deferred"} 900\nmailfleet_relay_queue_oldest_ready_seconds 4.5\n';
    const sessions = 'mailfleet_relay_smtp_sessions{listener="submission"} 3\nmailfleet_relay_smtp_sessions{listener="open"} 2\n';
    expect(relaySignals(queue + sessions)).toEqual({ ready: 12, oldestReadySeconds: 4.5, sessions: 5, queued: 912 });
    // No session yet on any listener: the gauge has no sample.
    expect(relaySignals(queue)).toEqual({ ready: 12, oldestReadySeconds: 4.5, sessions: 0, queued: 912 });
    expect(relaySignals(sessions)).toBeUndefined();
    expect(relaySignals(queue.replace(' 12', ' NaN'))).toBeUndefined();
    expect(relaySignals(queue + 'mailfleet_relay_smtp_sessions{listener="open"} +Inf\n')).toBeUndefined();
    expect(relaySignals('<html>not metrics</html>')).toBeUndefined();
  });

  it('reads the smarthost authentication state: successes, failures over reasons, the reason whose failing gauge is 1; nothing from a relay older than the metrics', () => {
    const queue = 'mailfleet_relay_queue_messages{state="ready"} 0\nmailfleet_relay_queue_oldest_ready_seconds 0\n';
    const auth = (failing: string) =>
      [
        'mailfleet_relay_smarthost_auth_successes_total 4',
        'mailfleet_relay_smarthost_auth_failures_total{reason="basic_auth_disabled"} 2',
        'mailfleet_relay_smarthost_auth_failures_total{reason="token_client_rejected"} 1',
        'mailfleet_relay_smarthost_auth_failing{reason="basic_auth_disabled"} 0',
        `mailfleet_relay_smarthost_auth_failing{reason="token_client_rejected"} ${failing === 'token_client_rejected' ? 1 : 0}`,
        `mailfleet_relay_smarthost_auth_failing{reason="a_reason_from_a_newer_relay"} ${failing === 'newer' ? 1 : 0}`,
      ].join('\n');
    expect(relaySignals(queue + auth('token_client_rejected'))?.smarthostAuth).toEqual({ successes: 4, failures: 3, failing: 'token_client_rejected' });
    expect(relaySignals(queue + auth(''))?.smarthostAuth).toEqual({ successes: 4, failures: 3 });
    expect(relaySignals(queue + auth('newer'))?.smarthostAuth).toEqual({ successes: 4, failures: 3 });
    expect(relaySignals(queue)).not.toHaveProperty('smarthostAuth');
  });
});

describe('a relay pod\'s /metrics', () => {
  it('gives the queue the relay reports and its open sessions over all listeners', async () => {
    // A smarthost that accepts and never greets: while the relay waits for the greeting, the
    // messages stay due.
    const hang = net.createServer(() => undefined);
    await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => hang.close(resolve)));
    const sockets = new Set<net.Socket>();
    hang.on('connection', (s) => sockets.add(s));
    cleanups.push(() => sockets.forEach((s) => s.destroy()));
    const r = await relay({
      delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: (hang.address() as net.AddressInfo).port, tls: 'none' }, maxConnections: 1, maxConnectionsPerDestination: 1, connectTimeout: '60s' },
    });
    for (const n of [1, 2, 3]) expect(await submit(r.ports.open!, 'app@example.test', ['r@dest.test'], MSG(n))).toMatch(/^250/);
    await waitFor(async () => (await r.queueStats()).ready === 3, 'three messages due');
    const open = await SmtpTalk.connect(r.ports.open!);
    const submission = await SmtpTalk.connect(r.ports.submission!);
    cleanups.push(() => open.talk.quit(), () => submission.talk.quit());

    const url = `http://127.0.0.1:${r.httpPort}/metrics`;
    // The submitting sessions close a moment after their QUIT.
    await waitFor(async () => (await scrapeSignals(url, 2000))?.sessions === 2, 'the two sessions held open');
    const before = await r.queueStats();
    const signals = await scrapeSignals(url, 2000);
    const after = await r.queueStats();
    expect(signals).toMatchObject({ ready: 3, sessions: 2 });
    expect([before.ready, after.ready]).toEqual([3, 3]);
    expect(signals!.oldestReadySeconds).toBeGreaterThanOrEqual(before.oldestReadySeconds);
    expect(signals!.oldestReadySeconds).toBeLessThanOrEqual(after.oldestReadySeconds);
    expect(signals!.oldestReadySeconds).toBeGreaterThan(0);
    // The same, parsed from the text fetched here.
    const text = await (await fetch(url)).text();
    expect(relaySignals(text)).toMatchObject({ ready: 3, sessions: 2 });
    // Every sample line of the relay's real exposition (prom-client's, histograms included) is read.
    const sampleLines = text.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
    expect(sampleLines.some((l) => /_bucket\{.*le="\+Inf"/.test(l))).toBe(true);
    expect(parseExposition(text)).toHaveLength(sampleLines.length);
  });

  it('does not count a message waiting for its retry time', async () => {
    const r = await relay({ delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: await freePort(), tls: 'none' } }, retry: { minBackoff: '1h', maxBackoff: '1h' } });
    expect(await submit(r.ports.open!, 'app@example.test', ['r@dest.test'], MSG(1))).toMatch(/^250/);
    await waitFor(async () => (await r.queueStats()).deferred === 1, 'the message deferred');
    expect(await scrapeSignals(`http://127.0.0.1:${r.httpPort}/metrics`, 2000)).toMatchObject({ ready: 0, oldestReadySeconds: 0 });
  });
});

describe('a /metrics that does not answer', () => {
  it('gives undefined after the timeout when the pod accepts and never replies', async () => {
    const url = await serve(() => undefined);
    const started = Date.now();
    expect(await scrapeSignals(url, 300)).toBeUndefined();
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('gives undefined when the reply never finishes', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('mailfleet_relay_queue_messages{state="ready"} 1\n');
    });
    expect(await scrapeSignals(url, 300)).toBeUndefined();
  });

  it('gives undefined on a 500, a refused connection or a malformed URL', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(500);
      res.end('mailfleet_relay_queue_messages{state="ready"} 1\nmailfleet_relay_queue_oldest_ready_seconds 1\n');
    });
    expect(await scrapeSignals(url, 2000)).toBeUndefined();
    expect(await scrapeSignals(`http://127.0.0.1:${await freePort()}/metrics`, 2000)).toBeUndefined();
    expect(await scrapeSignals('not a url', 2000)).toBeUndefined();
  });
});
