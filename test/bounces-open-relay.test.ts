// swaks as an open-relay prober of a `bounces` listener: it takes reports for the fleet's return
// paths from anyone, so every trick that makes a server relay must meet a refusal at RCPT.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePeer } from './peers/availability.js';
import { runSwaks, SWAKS_BINARIES } from './peers/swaks.js';
import { counter } from './support/e2e.js';
import { startTestRelay, type TestRelay } from './support/relay.js';

describePeer('a bounces listener probed for an open relay with swaks', [...SWAKS_BINARIES], () => {
  let relay: TestRelay;
  let dir: string;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-bounces-relay-'));
    fs.writeFileSync(path.join(dir, 'key'), 'fleet-return-path-key-0123456789abcdefghij');
    relay = await startTestRelay({
      listeners: [{ name: 'bounces', address: '127.0.0.1', port: 0, tls: 'none', auth: 'none', role: 'bounces', trustedNetworks: ['127.0.0.0/8'] }],
      senderDomains: [{ domain: 'example.test', returnPath: 'bounces.example.test' }],
      bounces: { keyFile: path.join(dir, 'key') },
    });
  });
  afterAll(async () => {
    await relay?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // The classic relay tests (source routes, % hacks, quoted and bang paths, literals), and the listener's own domains.
  const PROBES = [
    'victim@elsewhere.test',
    'victim@example.test',
    'postmaster@bounces.example.test',
    'victim%elsewhere.test@bounces.example.test',
    '"victim@elsewhere.test"@bounces.example.test',
    'victim@elsewhere.test@bounces.example.test',
    '@bounces.example.test:victim@elsewhere.test',
    'elsewhere.test!victim@bounces.example.test',
    'victim@[127.0.0.1]',
    'b+mxc7cr3x76ea7000007-aaaaaaaaaa@bounces.example.test',
    'fbl@elsewhere.test',
  ];

  it('refuses each at RCPT (even from a trusted network, with the null sender or its own domain as sender) and keeps nothing', async () => {
    for (const to of PROBES) {
      for (const from of ['spammer@outside.test', '', 'app@example.test']) {
        const r = await runSwaks(['--server', '127.0.0.1', '--port', String(relay.ports.bounces), '--helo', 'prober.outside.test', '--from', from, '--to', to]);
        expect(r.code, `${from} -> ${to}: ${r.stdout}${r.stderr}`).toBe(24); // swaks: RCPT refused
        expect(r.stdout).not.toMatch(/ [-~]> DATA/);
      }
    }
    expect(await relay.spooled()).toEqual([]);
    expect(relay.delivered()).toEqual([]);
    expect(await counter(relay, 'mailfleet_relay_smtp_rejections_total', 'reason="not_return_path"')).toBeGreaterThanOrEqual(PROBES.length * 2);
  });
});
