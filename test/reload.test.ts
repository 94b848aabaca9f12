/**
 * Config reloads of a running relay: what changes at once, what an open session keeps, and a
 * new config that cannot be applied whole refused with the running one left as it was.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { afterEach, describe, expect, it } from 'vitest';
import { hashPassword } from '../relay/users.js';
import { canConnect, freePort } from './peers/ports.js';
import { capturedLog, startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { SmtpTalk, submit } from './support/smtp-talk.js';

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The fingerprint of the certificate a listener presents after STARTTLS (a raw session, no checks). */
async function presentedCertificate(port: number): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  const read = () => new Promise<string>((r) => socket.once('data', (d: Buffer) => r(d.toString())));
  await read();
  socket.write('EHLO client.test\r\n');
  await read();
  socket.write('STARTTLS\r\n');
  await read();
  const secure = tls.connect({ socket, rejectUnauthorized: false, servername: 'localhost' });
  await new Promise((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
  const fp = secure.getPeerCertificate().fingerprint256;
  secure.destroy();
  return fp;
}

describe('config reload', () => {
  let relay: TestRelay;
  afterEach(async () => relay?.stop());

  it('applies a valid change without dropping an open session, and refuses an invalid one keeping the old config', async () => {
    relay = await startTestRelay({ limits: { maxRecipients: 2 } });
    const file = path.join(relay.dir, 'relay.yaml');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    const { talk } = await SmtpTalk.connect(relay.ports.open!);
    await talk.send('EHLO client.test');

    fs.writeFileSync(file, JSON.stringify({ ...config, limits: { maxRecipients: 5 } }));
    await waitFor(async () => /result="success"\} 1/.test(await relay.metricsText()), 'the reload to apply');
    expect(relay.config().limits.maxRecipients).toBe(5);
    // The session opened before the reload still works.
    expect(await talk.send('MAIL FROM:<a@example.test>')).toMatch(/^250/);
    await talk.quit();

    fs.writeFileSync(file, JSON.stringify({ ...config, limits: { maxRecipients: -1 } }));
    await waitFor(async () => /result="failure"\} 1/.test(await relay.metricsText()), 'the refused reload to be counted');
    expect(relay.config().limits.maxRecipients).toBe(5);
    expect(await submit(relay.ports.open!, 'a@example.test', ['r1@d.test', 'r2@d.test', 'r3@d.test'], 'Subject: x\r\n\r\nx\r\n')).toMatch(/^250/);
  });

  it('replaces a listener at once on a reload, while a session on the old one finishes its mail', async () => {
    const port = await freePort();
    relay = await startTestRelay({ listeners: [{ name: 'open', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }] });
    const { talk } = await SmtpTalk.connect(port);
    await talk.send('EHLO client.test');
    expect(await talk.send('MAIL FROM:<app@example.test>')).toMatch(/^250/);

    const file = path.join(relay.dir, 'relay.yaml');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    config.listeners[0].greetingDelay = '10ms';
    fs.writeFileSync(file, JSON.stringify(config));
    // Not after the open mail is done (that may take the client minutes): the new listener serves the port now.
    await waitFor(async () => /config_reloads_total\{result="success"\} 1/.test(await relay.metricsText()), 'the reload to apply', 5000);
    expect(relay.config().listeners[0]!.greetingDelay).toBe(0.01);
    expect(await submit(port, 'app@example.test', ['new@dest.test'], 'Subject: to the new listener\r\n\r\nx\r\n')).toMatch(/^250 /);

    // The session on the retired listener still finishes the mail it began.
    expect(await talk.send('RCPT TO:<old@dest.test>')).toMatch(/^250/);
    expect(await talk.send('DATA')).toMatch(/^354/);
    expect(await talk.send('Subject: begun before the reload\r\n\r\nx\r\n.')).toMatch(/^250 /);
    await waitFor(() => relay.delivered().length === 2, 'both messages delivered');
    expect(relay.delivered().map((m) => /Subject: (.*)\r\n/.exec(m.toString())![1]).sort()).toEqual(['begun before the reload', 'to the new listener']);
  });

  it('refuses a reload whose new port is taken, and keeps serving the old one with the old config', async () => {
    const [port, taken] = [await freePort(), await freePort()];
    const holder = net.createServer().listen(taken, '127.0.0.1');
    cleanups.push(() => new Promise<void>((r) => holder.close(() => r())));
    relay = await startTestRelay({ listeners: [{ name: 'open', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }] });
    const file = path.join(relay.dir, 'relay.yaml');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    config.listeners[0].port = taken;
    config.limits = { maxRecipients: 7 };
    fs.writeFileSync(file, JSON.stringify(config));
    await waitFor(async () => /config_reloads_total\{result="failure"\} 1/.test(await relay.metricsText()), 'the reload to be refused');
    expect(relay.config().listeners[0]!.port).toBe(port);
    expect(relay.config().limits.maxRecipients).not.toBe(7);
    expect(relay.ports.open).toBe(port);
    expect(await submit(port, 'app@example.test', ['r@dest.test'], 'Subject: after the refused reload\r\n\r\nx\r\n')).toMatch(/^250 /);
  });

  it('keeps a client locked out for failed logins on the listener a reload replaces', async () => {
    const submission = await freePort();
    const listeners = [
      { name: 'open', address: '127.0.0.1', port: 0, tls: 'none' as const, auth: 'none' as const, trustedNetworks: ['127.0.0.0/8'] },
      { name: 'submission', address: '127.0.0.1', port: submission, tls: 'starttls' as const, auth: 'required' as const },
    ];
    relay = await startTestRelay({ listeners, limits: { authFailuresPerSession: 5, authFailuresPerClient: 2, authFailureWindow: '10m', authFailureDelay: 0 } });
    const login = async (password: string) => {
      const { talk } = await SmtpTalk.connect(submission, '127.0.0.1', '127.0.0.5');
      await talk.send('EHLO client.test');
      await talk.starttls();
      await talk.send('EHLO client.test');
      const reply = await talk.authPlain(relay.user, password);
      await talk.quit();
      return reply;
    };
    expect(await login('guess-1')).toMatch(/^535/);
    expect(await login('guess-2')).toMatch(/^535/);
    expect(await login(relay.password)).toMatch(/^454 4\.7\.0 Too many failed logins/);

    // A changed setting replaces the submission listener (same port, a new server behind it).
    const file = path.join(relay.dir, 'relay.yaml');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    config.listeners[1].greetingDelay = '10ms';
    fs.writeFileSync(file, JSON.stringify(config));
    await waitFor(async () => /config_reloads_total\{result="success"\} 1/.test(await relay.metricsText()), 'the reload to apply');
    expect(relay.config().listeners[1]!.greetingDelay).toBe(0.01);
    expect(await login(relay.password)).toMatch(/^454 4\.7\.0 Too many failed logins/);
    // Another address still logs in on the new listener.
    const { talk } = await SmtpTalk.connect(submission, '127.0.0.1', '127.0.0.6');
    await talk.send('EHLO client.test');
    await talk.starttls();
    await talk.send('EHLO client.test');
    expect(await talk.authPlain(relay.user, relay.password)).toMatch(/^235/);
    await talk.quit();
  });

  it('picks up a renewed certificate and a changed users file without a config change', async () => {
    relay = await startTestRelay();
    const port = relay.ports.submission!;
    const certOf = () => presentedCertificate(port);
    const before = await certOf();

    const renewed = await generate([{ name: 'commonName', value: 'localhost' }], { keySize: 2048 });
    fs.writeFileSync(path.join(relay.dir, 'tls/dev.key'), renewed.private);
    fs.writeFileSync(path.join(relay.dir, 'tls/dev.crt'), renewed.cert);
    fs.appendFileSync(path.join(relay.dir, 'users'), `ops:${await hashPassword('ops-secret')}\n`);
    await waitFor(async () => /config_reloads_total\{result="success"\} [1-9]/.test(await relay.metricsText()), 'the reload');

    expect(await certOf()).not.toBe(before);
    expect(await certOf()).toBe(new crypto.X509Certificate(renewed.cert).fingerprint256);
    const { talk } = await SmtpTalk.connect(port);
    await talk.send('EHLO client.test');
    await talk.starttls();
    await talk.send('EHLO client.test');
    expect(await talk.authPlain('ops', 'ops-secret')).toMatch(/^235/);
    await talk.quit();
  });

  it('refuses a certificate it cannot use (MF_TLS_INVALID), and keeps serving TLS with the one it has', async () => {
    const { log, lines } = capturedLog();
    relay = await startTestRelay({}, { log });
    const port = relay.ports.submission!;
    const before = await presentedCertificate(port);
    // A certificate cut short, as a half-written Secret would be.
    fs.writeFileSync(path.join(relay.dir, 'tls/dev.crt'), '-----BEGIN CERTIFICATE-----\nMIIBcut\n-----END CERTIFICATE-----\n');
    await waitFor(async () => /config_reloads_total\{result="failure"\} 1/.test(await relay.metricsText()), 'the reload to be refused');
    expect(lines().find((l) => l.event === 'config_rejected')?.error).toMatch(/^MF_TLS_INVALID: cannot use the TLS certificate .*dev\.crt/);
    expect(await presentedCertificate(port)).toBe(before);
    // And a key that is not the certificate's.
    const other = await generate([{ name: 'commonName', value: 'localhost' }], { keySize: 2048 });
    fs.writeFileSync(path.join(relay.dir, 'tls/dev.crt'), other.cert);
    await waitFor(async () => /config_reloads_total\{result="failure"\} 2/.test(await relay.metricsText()), 'the second reload to be refused');
    expect(await presentedCertificate(port)).toBe(before);
    const { talk } = await SmtpTalk.connect(port);
    await talk.send('EHLO client.test');
    await talk.starttls();
    await talk.send('EHLO client.test');
    expect(await talk.authPlain(relay.user, relay.password)).toMatch(/^235/);
    await talk.quit();
  });

  it('takes no reload once it stops: a config change during the drain binds nothing', async () => {
    const [port, next] = [await freePort(), await freePort()];
    relay = await startTestRelay({ shutdown: { drainTimeout: '2s' }, listeners: [{ name: 'open', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }] });
    // A session in a mail keeps the drain going a while.
    const { talk } = await SmtpTalk.connect(port);
    await talk.send('EHLO client.test');
    expect(await talk.send('MAIL FROM:<app@example.test>')).toMatch(/^250/);
    const file = path.join(relay.dir, 'relay.yaml');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    config.listeners[0].port = next;
    fs.writeFileSync(file, JSON.stringify(config));
    const stopping = relay.shutdown();
    // A SIGHUP (or the file watch) during the drain.
    expect(await relay.reload()).toBe(false);
    await stopping;
    expect(await canConnect(next)).toBe(false);
    expect(await canConnect(port)).toBe(false);
  });

  it('puts the old listener back when the new one cannot bind where the old one was (an address not on this host)', async () => {
    const port = await freePort();
    relay = await startTestRelay({ listeners: [{ name: 'open', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }] });
    const file = path.join(relay.dir, 'relay.yaml');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    config.listeners[0].address = '192.0.2.1';
    fs.writeFileSync(file, JSON.stringify(config));
    expect(await relay.reload()).toBe(false);
    expect(relay.config().listeners[0]!.address).toBe('127.0.0.1');
    expect(relay.ports.open).toBe(port);
    expect(await submit(port, 'app@example.test', ['r@dest.test'], 'Subject: after the refused reload\r\n\r\nx\r\n')).toMatch(/^250 /);
  });
});
