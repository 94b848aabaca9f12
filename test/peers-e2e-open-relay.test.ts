// End to end: swaks as an open-relay prober of the relay, refused without AUTH and relayed with it.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePeer } from './peers/availability.js';
import { runSwaks, SWAKS_BINARIES } from './peers/swaks.js';
import { counter, RETRY, runSwaksAuth } from './support/e2e.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';

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
