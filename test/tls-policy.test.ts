/**
 * Outbound TLS policy end to end: a relay with the mx route, dnsmasq for MX, A and the
 * `_mta-sts` TXT record, an HTTPS server for the MTA-STS policy and a destination that offers
 * STARTTLS with a certificate from the test CA, or one nobody trusts.
 */
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import type { RelayConfigInput } from '../relay/config.js';
import { describePeer } from './peers/availability.js';
import { startDnsmasq, type Dnsmasq } from './peers/dnsmasq.js';
import { freePort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { selfSignedCert, testCa, type TestCa, type TestCert } from './peers/tls.js';
import { spawnMailfleet, type RelayProcess } from './support/process.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const MSG = 'From: app@sender.test\r\nTo: someone@example.test\r\nSubject: tls policy\r\n\r\nHello.\r\n';
const policyText = (mode: string, mx = 'mx.example.test') => `version: STSv1\nmode: ${mode}\nmx: ${mx}\nmax_age: 86400\n`;

describePeer('outbound TLS policy', ['openssl', '/usr/sbin/dnsmasq'], () => {
  let ca: TestCa;
  let trusted: { key: string; cert: string };
  let untrusted: TestCert;
  let dns: Dnsmasq;
  let policyServer: https.Server;
  let policyPort: number;
  let policy = policyText('enforce');

  let relay: TestRelay | undefined;
  let sink: ScriptedSink | undefined;
  let relayProcess: RelayProcess | undefined;
  const dirs: string[] = [];

  beforeAll(async () => {
    ca = await testCa();
    trusted = await ca.issue('mx.example.test');
    untrusted = await selfSignedCert('mx.example.test');
    const policyCert = await ca.issue('mta-sts.example.test');
    policyServer = https.createServer(policyCert, (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(policy));
    await new Promise<void>((r) => policyServer.listen(0, '127.0.0.1', r));
    policyPort = (policyServer.address() as AddressInfo).port;
    dns = await startDnsmasq({
      mx: [
        { domain: 'example.test', host: 'mx.example.test', preference: 10 },
        { domain: 'plain.test', host: 'mx.plain.test', preference: 10 },
      ],
      hosts: [
        { name: 'mx.example.test', address: '127.0.0.1' },
        { name: 'mx.plain.test', address: '127.0.0.1' },
        { name: 'mta-sts.example.test', address: '127.0.0.1' },
      ],
      txt: [{ name: '_mta-sts.example.test', values: ['v=STSv1; id=20260101T000000;'] }],
    });
  });

  afterAll(async () => {
    await dns?.stop();
    await new Promise((r) => policyServer?.close(r));
    untrusted?.cleanup();
    ca?.cleanup();
  });

  afterEach(async () => {
    await relay?.stop();
    await sink?.stop();
    if (relayProcess && relayProcess.child.exitCode === null && relayProcess.child.signalCode === null) {
      relayProcess.child.kill('SIGKILL');
      await relayProcess.exited;
    }
    for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
    relay = sink = relayProcess = undefined;
  });

  type TlsPolicyInput = NonNullable<RelayConfigInput['delivery']['tlsPolicy']>;
  function deliveryConfig(sinkPort: number, tlsPolicy: TlsPolicyInput = {}, providers: RelayConfigInput['delivery']['providers'] = []): RelayConfigInput['delivery'] {
    return {
      providers,
      route: { type: 'mx', dnsServers: [dns.server], port: sinkPort },
      tlsPolicy: { mtaStsPort: policyPort, caFile: ca.certFile, ...tlsPolicy },
    };
  }

  async function start(opts: { cert?: { key: string; cert: string }; tlsPolicy?: TlsPolicyInput }): Promise<{ relay: TestRelay; sink: ScriptedSink }> {
    sink = await startScriptedSink({ hostname: 'mx.example.test', starttls: opts.cert });
    relay = await startTestRelay({ delivery: deliveryConfig(sink.port, opts.tlsPolicy), retry: { minBackoff: '1h', maxBackoff: '1h' } });
    return { relay, sink };
  }

  async function counter(r: TestRelay, result: string): Promise<number> {
    const line = (await r.metricsText()).split('\n').find((l) => l.startsWith('mailfleet_relay_deliveries_total{') && l.includes(`result="${result}"`));
    return line ? Number(line.split(' ').pop()) : 0;
  }

  /** The recipients' last replies as the spool keeps them (what an operator reads in the queue). */
  async function lastReplies(r: TestRelay): Promise<{ lastReply?: string; statusCode?: string }[]> {
    return (await r.spooled()).flatMap((e) => e.recipients).filter((x) => x.lastReply !== undefined);
  }

  async function expectDeferred(r: TestRelay, s: ScriptedSink, reply: RegExp, statusCode: string): Promise<void> {
    await waitFor(async () => (await counter(r, 'deferred')) === 1, 'a deferral');
    await waitFor(async () => (await lastReplies(r)).length === 1, 'the deferral in the spool');
    const [last] = await lastReplies(r);
    expect(last!.lastReply).toMatch(reply);
    expect(last!.statusCode).toBe(statusCode);
    expect(await r.queueStats()).toMatchObject({ deferred: 1 });
    expect(await counter(r, 'bounced')).toBe(0);
    expect(s.messages).toHaveLength(0);
  }

  it('defers, and sends nothing, when an MTA-STS enforce policy meets an untrusted certificate', async () => {
    policy = policyText('enforce');
    const { relay, sink } = await start({ cert: untrusted });
    expect(await submit(relay.ports.open!, 'app@sender.test', ['someone@example.test'], MSG)).toMatch(/^250/);
    await expectDeferred(
      relay,
      sink,
      /^no MX host of example\.test accepted a connection; last: the MTA-STS policy of example\.test \(mode enforce\) requires TLS with a certificate valid for mx\.example\.test: TLS handshake with mx\.example\.test\[127\.0\.0\.1\]:\d+ failed: self-signed certificate$/,
      '4.7.5',
    );
    // The relay reached the host and refused it during the handshake.
    expect(sink.connections).toBeGreaterThan(0);
  });

  it('delivers over verified TLS when the certificate comes from a trusted CA and names the MX host', async () => {
    policy = policyText('enforce');
    const { relay, sink } = await start({ cert: trusted });
    expect(await submit(relay.ports.open!, 'app@sender.test', ['someone@example.test'], MSG)).toMatch(/^250/);
    await sink.waitForMessages(1);
    expect(sink.messages[0]!.envelope).toEqual({ from: 'app@sender.test', to: ['someone@example.test'] });
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    expect(sink.errors).toEqual([]);
  });

  it('defers when an enforce policy lists none of the domain\'s MX hosts, without connecting', async () => {
    policy = policyText('enforce', '*.elsewhere.test');
    const { relay, sink } = await start({ cert: trusted });
    expect(await submit(relay.ports.open!, 'app@sender.test', ['someone@example.test'], MSG)).toMatch(/^250/);
    await expectDeferred(
      relay,
      sink,
      /^the MTA-STS policy of example\.test \(mode enforce\) allows only MX hosts matching \*\.elsewhere\.test, and none of its MX hosts \(mx\.example\.test\) does$/,
      '4.7.5',
    );
    expect(sink.connections).toBe(0);
  });

  it('defers with a clear reply when requireTls lists a domain whose MX offers no STARTTLS', async () => {
    let envelopes = 0;
    sink = await startScriptedSink({ hostname: 'mx.plain.test', replies: () => void envelopes++ });
    relay = await startTestRelay({ delivery: deliveryConfig(sink.port, { requireTls: ['plain.test'] }), retry: { minBackoff: '1h', maxBackoff: '1h' } });
    expect(await submit(relay.ports.open!, 'app@sender.test', ['someone@plain.test'], MSG)).toMatch(/^250/);
    await expectDeferred(
      relay,
      sink,
      /delivery\.tlsPolicy\.requireTls \(plain\.test\) requires TLS with a certificate valid for mx\.plain\.test: mx\.plain\.test\[127\.0\.0\.1\]:\d+ did not start TLS: its reply to STARTTLS was "5\d\d /,
      '4.7.4',
    );
    expect(envelopes).toBe(0);
  });

  it('defers when an enforce policy meets a destination that offers no STARTTLS', async () => {
    policy = policyText('enforce');
    const { relay, sink } = await start({});
    expect(await submit(relay.ports.open!, 'app@sender.test', ['someone@example.test'], MSG)).toMatch(/^250/);
    await expectDeferred(
      relay,
      sink,
      /the MTA-STS policy of example\.test \(mode enforce\) requires TLS with a certificate valid for mx\.example\.test: mx\.example\.test\[127\.0\.0\.1\]:\d+ did not start TLS/,
      '4.7.4',
    );
  });

  it('requires verified TLS for every domain on the MX hosts of a provider with requireTls', async () => {
    sink = await startScriptedSink({ hostname: 'mx.plain.test', starttls: untrusted });
    relay = await startTestRelay({
      delivery: deliveryConfig(sink.port, {}, [{ name: 'corp', mxHosts: ['mx.plain.test'], requireTls: true }]),
      retry: { minBackoff: '1h', maxBackoff: '1h' },
    });
    expect(await submit(relay.ports.open!, 'app@sender.test', ['someone@plain.test'], MSG)).toMatch(/^250/);
    await expectDeferred(
      relay,
      sink,
      /the TLS policy of provider corp requires TLS with a certificate valid for mx\.plain\.test: TLS handshake with mx\.plain\.test\[127\.0\.0\.1\]:\d+ failed: self-signed certificate$/,
      '4.7.5',
    );
  });

  it('delivers over opportunistic TLS, certificate unchecked, to a domain with no policy', async () => {
    const { relay, sink } = await start({ cert: untrusted });
    expect(await submit(relay.ports.open!, 'app@sender.test', ['someone@plain.test'], MSG)).toMatch(/^250/);
    await sink.waitForMessages(1);
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
  });

  it('trusts delivery.tlsPolicy.caFile for the smarthost too (a relay host with a private CA)', async () => {
    const hostCert = await ca.issue('127.0.0.1');
    sink = await startScriptedSink({ hostname: 'smarthost.test', starttls: hostCert });
    const route = { type: 'smarthost' as const, host: '127.0.0.1', port: sink.port, tls: 'starttls' as const };
    // Without the CA the certificate does not verify: deferred, nothing sent.
    relay = await startTestRelay({ delivery: { route }, retry: { minBackoff: '1h', maxBackoff: '1h' } });
    expect(await submit(relay.ports.open!, 'app@sender.test', ['someone@example.test'], MSG)).toMatch(/^250/);
    await waitFor(async () => (await lastReplies(relay!)).length === 1, 'the deferral in the spool');
    expect((await lastReplies(relay))[0]!.lastReply).toMatch(/certificate/i);
    expect(sink.messages).toHaveLength(0);
    await relay.stop();
    // With it, delivered over verified TLS.
    relay = await startTestRelay({ delivery: { route, tlsPolicy: { caFile: ca.certFile } } });
    expect(await submit(relay.ports.open!, 'app@sender.test', ['someone@example.test'], MSG)).toMatch(/^250/);
    await sink.waitForMessages(1);
    // The route requires STARTTLS and verifies the certificate: delivered means over verified TLS.
    expect(sink.messages[0]!.envelope).toEqual({ from: 'app@sender.test', to: ['someone@example.test'] });
  });

  // As a process, so the assertion reads the JSON log lines a user reads in `kubectl logs`.
  it('delivers in MTA-STS testing mode despite an untrusted certificate, and logs what enforce would have refused', async () => {
    policy = policyText('testing');
    sink = await startScriptedSink({ hostname: 'mx.example.test', starttls: untrusted });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-tls-'));
    dirs.push(dir);
    const smtpPort = await freePort();
    const file = path.join(dir, 'relay.yaml');
    fs.writeFileSync(
      file,
      JSON.stringify({
        hostname: 'relay.test',
        spool: { dir: 'spool', minFreeBytes: 0 },
        listeners: [{ name: 'in', address: '127.0.0.1', port: smtpPort, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
        delivery: deliveryConfig(sink.port),
        http: { address: '127.0.0.1', port: 0 },
      }),
    );
    relayProcess = spawnMailfleet(['relay', '--config', file]);
    await relayProcess.waitForLog(/"event":"listening"/);
    expect(await submit(smtpPort, 'app@sender.test', ['someone@example.test'], MSG)).toMatch(/^250/);
    await sink.waitForMessages(1);
    await relayProcess.waitForLog(/"event":"mta-sts-testing"/);
    const line = relayProcess
      .output()
      .split('\n')
      .find((l) => l.includes('"event":"mta-sts-testing"'))!;
    const entry = JSON.parse(line) as { level: number; msg: string; domain: string; violations: string[] };
    expect(entry).toMatchObject({ level: 40, domain: 'example.test' });
    expect(entry.msg).toMatch(
      /^MTA-STS policy of example\.test is in mode testing; enforce would have deferred this delivery: the certificate is not valid for mx\.example\.test \(DEPTH_ZERO_SELF_SIGNED_CERT\)\. Delivering anyway$/,
    );
  });
});
