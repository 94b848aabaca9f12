import { expect, it } from 'vitest';
import { describePeer } from './availability.js';
import { startScriptedSink } from './scripted-sink.js';
import { runSwaks, SWAKS_BINARIES } from './swaks.js';
import { useTeardown } from './teardown.js';
import { selfSignedCert } from './tls.js';
import { waitUntil } from './wait.js';

describePeer('swaks', [...SWAKS_BINARIES, 'openssl'], () => {
  const defer = useTeardown();

  it('sends a message and reports success with exit 0', async () => {
    const sink = await startScriptedSink();
    defer(sink.stop);
    const r = await runSwaks(['--server', '127.0.0.1', '--port', String(sink.port), '--from', 'a@client.test', '--to', 'b@dest.test', '--header', 'Subject: swaks peer', '--body', 'hello']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('250 ');
    expect(sink.messages[0]?.envelope).toEqual({ from: 'a@client.test', to: ['b@dest.test'] });
    expect(sink.messages[0]?.raw.toString()).toContain('Subject: swaks peer\r\n');
  });

  it('exits non-zero when the server refuses the recipient', async () => {
    const sink = await startScriptedSink({ replies: () => ({ code: 550, message: '5.1.1 no such user' }) });
    defer(sink.stop);
    const r = await runSwaks(['--server', '127.0.0.1', '--port', String(sink.port), '--from', 'a@client.test', '--to', 'b@dest.test']);
    expect(r.code).toBe(24); // swaks: RCPT refused
    expect(r.stdout).toContain('550 5.1.1 no such user');
    expect(sink.messages).toHaveLength(0);
  });

  it('does STARTTLS and verifies the server certificate', async () => {
    const cert = await selfSignedCert('sink.peer.test');
    defer(cert.cleanup);
    const sink = await startScriptedSink({ starttls: cert });
    defer(sink.stop);
    const base = ['--server', '127.0.0.1', '--port', String(sink.port), '--from', 'a@client.test', '--to', 'b@dest.test', '--tls'];
    const ok = await runSwaks([...base, '--tls-verify', '--tls-ca-path', cert.certFile]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/TLS started/);
    // Verification against another CA must fail: swaks really checks the chain.
    const other = await selfSignedCert('sink.peer.test');
    defer(other.cleanup);
    const wrongCa = await runSwaks([...base, '--tls-verify', '--tls-ca-path', other.certFile]);
    expect(wrongCa.code).not.toBe(0);
    await waitUntil(() => sink.errors.some((e) => e.message === 'Failed to establish TLS session'), { what: 'the TLS failure at the sink' });
    expect(sink.messages).toHaveLength(1);
  });
});
