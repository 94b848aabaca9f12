/**
 * Traffic shaping against real peers: dnsmasq gives several domains MX hosts of one provider,
 * scripted SMTP sinks on 127.0.0.2 and 127.0.0.3 play the provider and an independent domain.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePeer } from './peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq, type Dnsmasq } from './peers/dnsmasq.js';
import { freePort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSinkOptions } from './peers/scripted-sink.js';
import { useTeardown } from './peers/teardown.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const MSG = (to: string, n: number) => `From: app@sender.test\r\nTo: ${to}\r\nSubject: shaped ${n}\r\n\r\nHello.\r\n`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function metric(relay: TestRelay, line: RegExp): Promise<number> {
  const m = line.exec(await relay.metricsText());
  return m ? Number(m[1]) : 0;
}

describePeer('traffic shaping per provider (MX rollup)', DNSMASQ_BINARIES, () => {
  const defer = useTeardown();
  let dns: Dnsmasq;

  beforeAll(async () => {
    dns = await startDnsmasq({
      mx: [
        // Two customer domains hosted by one provider, and one domain of its own.
        { domain: 'one.test', host: 'mx1.bigmail.test', preference: 10 },
        { domain: 'two.test', host: 'mx2.bigmail.test', preference: 10 },
        { domain: 'small.test', host: 'mx.small.test', preference: 10 },
      ],
      hosts: [
        { name: 'mx1.bigmail.test', address: '127.0.0.2' },
        { name: 'mx2.bigmail.test', address: '127.0.0.2' },
        { name: 'mx.small.test', address: '127.0.0.3' },
      ],
    });
  });
  afterAll(async () => {
    await dns?.stop();
  });

  async function setup(big: ScriptedSinkOptions, provider: Record<string, unknown>) {
    const port = await freePort();
    const bigmail = await startScriptedSink({ ...big, address: '127.0.0.2', port, hostname: 'mx.bigmail.test' });
    defer(bigmail.stop);
    const small = await startScriptedSink({ address: '127.0.0.3', port, hostname: 'mx.small.test', dataDelayMs: big.dataDelayMs });
    defer(small.stop);
    const relay = await startTestRelay({
      delivery: { route: { type: 'mx', dnsServers: [dns.server], port }, providers: [{ name: 'bigmail', mxHosts: ['bigmail.test'], ...provider }] },
      retry: { minBackoff: '200ms', maxBackoff: '400ms' },
    });
    defer(relay.stop);
    return { bigmail, small, relay };
  }

  it('domains of one provider share its connection limit under load; other domains do not', async () => {
    const { bigmail, small, relay } = await setup({ dataDelayMs: 150 }, { maxConnections: 2 });
    const sends: Promise<string>[] = [];
    for (let i = 0; i < 30; i++) {
      const to = `user${i}@${['one.test', 'two.test', 'small.test'][i % 3]}`;
      sends.push(submit(relay.ports.open!, 'app@sender.test', [to], MSG(to, i)));
    }
    expect((await Promise.all(sends)).every((r) => r.startsWith('250'))).toBe(true);
    await waitFor(() => bigmail.messages.length === 20 && small.messages.length === 10, 'every message delivered', 30_000);
    // Two domains at the default 20 connections each could have opened 20; the provider allows 2.
    expect(bigmail.maxConcurrent).toBeLessThanOrEqual(2);
    expect(small.maxConcurrent).toBeGreaterThan(2);
    // The sink has the message a moment before the relay has read its 250 and counted it.
    const delivered = (provider: string) => metric(relay, new RegExp(`mailfleet_relay_deliveries_total\\{result="delivered",route="mx",provider="${provider}"\\} (\\d+)`));
    await waitFor(async () => (await delivered('bigmail')) === 20 && (await delivered('other')) === 10, 'the deliveries counted under their provider');
  });

  it('a 421 rate-limit reply slows the whole provider, not other destinations', async () => {
    const { bigmail, small, relay } = await setup(
      { replies: ({ rcpt }) => (rcpt.startsWith('first@') ? { code: 421, message: '4.7.28 Our system has detected an unusual rate of mail from your IP' } : undefined) },
      { throttleBackoff: '1h' },
    );
    expect(await submit(relay.ports.open!, 'app@sender.test', ['first@one.test'], MSG('first@one.test', 0))).toMatch(/^250/);
    await waitFor(async () => (await metric(relay, /mailfleet_relay_deliveries_total\{result="deferred",route="mx",provider="bigmail"\} (\d+)/)) === 1, 'the throttled attempt');
    const attemptsAtBigmail = bigmail.connections;
    // Another domain of the same provider waits; a domain elsewhere is delivered at once.
    expect(await submit(relay.ports.open!, 'app@sender.test', ['second@two.test'], MSG('second@two.test', 1))).toMatch(/^250/);
    expect(await submit(relay.ports.open!, 'app@sender.test', ['ok@small.test'], MSG('ok@small.test', 2))).toMatch(/^250/);
    await small.waitForMessages(1);
    await sleep(1000); // five times the message backoff: without the pause, both would have been tried again
    expect(bigmail.connections).toBe(attemptsAtBigmail);
    expect(bigmail.messages).toHaveLength(0);
    // Waiting on a throttling provider is not "due now": the autoscaler must not add relays for it.
    expect(await metric(relay, /mailfleet_relay_queue_messages\{state="ready"\} (\d+)/)).toBe(0);
    expect(await metric(relay, /mailfleet_relay_queue_messages\{state="deferred"\} (\d+)/)).toBe(2);
  });
});
