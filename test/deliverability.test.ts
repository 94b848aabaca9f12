/**
 * Relayed mail as a receiver judges it, by verifiers nobody here wrote: dkimpy (Debian's
 * python3-dkim) and mailauth, against the records `mailfleet records` printed, served by dnsmasq.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { authenticate, dkimVerify } from 'mailauth';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { generateDkimKey } from '../relay/dkim-keys.js';
import type { DnsRecord } from '../relay/records.js';
import { describePeer } from './peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq, type Dnsmasq } from './peers/dnsmasq.js';
import { freePort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';
import { dkimpy, PYTHON, recordsJson } from './support/dkim-verify.js';




const MESSAGE = (from: string, subject: string) =>
  `From: App <${from}>\r\nTo: someone@receiver.test\r\nSubject: ${subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour invoice is attached.\r\n\r\n-- \r\nApp\r\n`;

describePeer('deliverability: DKIM, SPF and DMARC as receivers see them', [...DNSMASQ_BINARIES, PYTHON], () => {
  // One relay for the whole suite: stopped after all tests, newest first.
  const stops: (() => unknown)[] = [];
  const defer = (stop: () => unknown) => stops.push(stop);
  let dnsmasq: Dnsmasq;
  let sink: ScriptedSink;
  let relay: TestRelay;
  let records: DnsRecord[];
  let resolve: (name: string, type: string) => Promise<unknown>;

  beforeAll(async () => {
    const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-deliverability-'));
    defer(() => fs.rmSync(keyDir, { recursive: true, force: true }));
    const keys = (['rsa-sha256', 'ed25519-sha256'] as const).map((algorithm) => {
      const file = path.join(keyDir, `${algorithm}.pem`);
      fs.writeFileSync(file, generateDkimKey(algorithm).privateKeyPem);
      return { selector: algorithm === 'rsa-sha256' ? 'mf-rsa' : 'mf-ed', privateKeyFile: file };
    });
    sink = await startScriptedSink({ hostname: 'mx.receiver.test' });
    defer(sink.stop);
    // The relay's records come from the relay's own config, so dnsmasq starts after the relay,
    // on the port the config already names (the relay asks DNS only when it delivers).
    const dnsPort = await freePort();
    relay = await startTestRelay({
      senderDomains: [{ domain: 'sender.test', dkim: { keys }, spf: { all: '-all' }, dmarc: { policy: 'reject', rua: ['mailto:dmarc@sender.test'] } }],
      delivery: { route: { type: 'mx', dnsServers: [`127.0.0.1:${dnsPort}`], port: sink.port }, egressAddresses: ['127.0.0.1'] },
    });
    defer(relay.stop);
    records = await recordsJson(path.join(relay.dir, 'relay.yaml'));
    dnsmasq = await startDnsmasq({
      port: dnsPort,
      mx: [{ domain: 'receiver.test', host: 'mx.receiver.test', preference: 10 }],
      hosts: [{ name: 'mx.receiver.test', address: '127.0.0.1' }],
      txt: records.map((r) => ({ name: r.name, values: [r.value] })),
    });
    const resolver = dnsmasq.resolver();
    resolve = (name, type) => resolver.resolve(name, type);
  });
  afterAll(async () => {
    await dnsmasq?.stop();
    for (const stop of stops.reverse()) await stop();
  });

  async function relayed(from: string, subject: string): Promise<Buffer> {
    const before = sink.messages.length;
    expect(await submit(relay.ports.open!, from, ['someone@receiver.test'], MESSAGE(from, subject))).toMatch(/^250/);
    await sink.waitForMessages(before + 1);
    return sink.messages[before]!.raw;
  }

  it('mailfleet records printed SPF, a DKIM record per selector and DMARC', () => {
    expect(records.map((r) => `${r.purpose} ${r.name}`).sort()).toEqual(['dkim mf-ed._domainkey.sender.test', 'dkim mf-rsa._domainkey.sender.test', 'dmarc _dmarc.sender.test', 'spf sender.test']);
    expect(records.find((r) => r.purpose === 'spf')!.value).toBe('v=spf1 ip4:127.0.0.1 -all');
  });

  it('both signatures verify with dkimpy and with mailauth; a message changed after signing fails both', async () => {
    const raw = await relayed('app@sender.test', 'signed');
    expect(dkimpy(raw, dnsmasq.port).map(({ h: _h, ...v }) => v)).toEqual([
      { domain: 'sender.test', selector: 'mf-rsa', algorithm: 'rsa-sha256', ok: true },
      { domain: 'sender.test', selector: 'mf-ed', algorithm: 'ed25519-sha256', ok: true },
    ]);
    const { results } = await dkimVerify(raw, { resolver: resolve as never });
    expect(results.map((r) => `${r.selector}:${r.status.result}`)).toEqual(['mf-rsa:pass', 'mf-ed:pass']);

    const changed = Buffer.from(raw.toString().replace('Your invoice', 'Your lnvoice'));
    expect(dkimpy(changed, dnsmasq.port).map((r) => r.ok)).toEqual([false, false]);
    const again = await dkimVerify(changed, { resolver: resolve as never });
    expect(again.results.some((r) => r.status.result === 'pass')).toBe(false);
    expect(await relay.metricsText()).toMatch(/mailfleet_relay_dkim_signatures_total\{domain="sender.test",algorithm="ed25519-sha256"\} [1-9]/);
  });

  it('mailauth authenticate(): SPF, DKIM and DMARC pass from the relay address; SPF fails from another', async () => {
    const raw = await relayed('app@sender.test', 'authenticated');
    const fromRelay = await authenticate(raw, { ip: '127.0.0.1', helo: 'relay.test', sender: 'app@sender.test', mta: 'mx.receiver.test', resolver: resolve as never });
    expect(fromRelay.spf && fromRelay.spf.status.result).toBe('pass');
    expect(fromRelay.dkim.results.map((r) => r.status.result)).toEqual(['pass', 'pass']);
    expect(fromRelay.dmarc && fromRelay.dmarc.status.result).toBe('pass');

    const fromElsewhere = await authenticate(raw, { ip: '192.0.2.1', helo: 'evil.test', sender: 'app@sender.test', mta: 'mx.receiver.test', resolver: resolve as never });
    expect(fromElsewhere.spf && fromElsewhere.spf.status.result).toBe('fail');
  });

  it('mail from a domain without keys leaves unsigned', async () => {
    const raw = await relayed('app@unsigned.test', 'unsigned');
    expect(raw.toString()).not.toMatch(/^DKIM-Signature:/im);
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
  });
});
