import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SmtpTalk, submit } from './support/smtp-talk.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';

const MESSAGE = 'From: app@example.test\r\nTo: b@dest.test\r\nSubject: hello\r\n\r\nbody line\r\n';

describe('intake: who may relay (open-relay battery)', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay({
      senderDomains: [{ domain: 'example.test' }],
      listeners: [
        // Loopback is NOT trusted here: every client below is a stranger unless it logs in.
        { name: 'plain', address: '127.0.0.1', port: 0, tls: 'none', auth: 'optional', trustedNetworks: ['10.99.0.0/16'] },
        { name: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls', auth: 'required' },
      ],
    });
  });
  afterAll(() => relay.stop());

  async function session(listener: string) {
    const { talk, greeting } = await SmtpTalk.connect(relay.ports[listener]!);
    expect(greeting).toMatch(/^220 /);
    return talk;
  }

  it('refuses to relay for an unauthenticated stranger at RCPT with 554 5.7.1', async () => {
    const t = await session('plain');
    await t.send('EHLO client.test');
    expect(await t.send('MAIL FROM:<app@example.test>')).toMatch(/^250/);
    expect(await t.send('RCPT TO:<victim@elsewhere.test>')).toMatch(/^554 5\.7\.1 .*Relay access denied/);
    // RFC 5321 3.6.1: the hop list of a source route is ignored; the mailbox is still someone else's.
    expect(await t.send('RCPT TO:<@hop.test:victim@elsewhere.test>')).toMatch(/^554 5\.7\.1 .*Relay access denied/);
    expect(await t.send('RCPT TO:<victim%elsewhere.test@hop.test>')).toMatch(/^554 5\.7\.1/);
    await t.quit();
  });

  it('asks for AUTH on a submission port before MAIL FROM', async () => {
    const t = await session('submission');
    await t.send('EHLO client.test');
    expect(await t.send('MAIL FROM:<app@example.test>')).toMatch(/^530 5\.7\.0 Authentication required/);
    await t.quit();
  });

  it('refuses AUTH before STARTTLS on a TLS listener', async () => {
    const t = await session('submission');
    const ehlo = await t.send('EHLO client.test');
    expect(ehlo).not.toMatch(/AUTH/);
    expect(await t.authPlain(relay.user, relay.password)).toBe('538 5.7.11 Encryption required: issue STARTTLS before AUTH');
    await t.quit();
    expect(await relay.metricsText()).toMatch(/^mailfleet_relay_smtp_rejections_total\{reason="tls_required"\} 1$/m);
  });

  it('refuses a wrong password with 535 5.7.8 and counts it', async () => {
    const t = await session('submission');
    await t.send('EHLO client.test');
    await t.starttls();
    expect(await t.send('EHLO client.test')).toMatch(/AUTH PLAIN LOGIN/);
    expect(await t.authPlain(relay.user, 'not-the-password')).toMatch(/^535 5\.7\.8/);
    expect(await t.authPlain('nobody', 'x')).toMatch(/^535 5\.7\.8/);
    await t.quit();
    expect(await relay.metricsText()).toMatch(/^mailfleet_relay_auth_failures_total\{reason="bad_credentials"\} 2$/m);
  });

  it('refuses a sender domain the user may not use, in the envelope and in the From header', async () => {
    const t = await session('submission');
    await t.send('EHLO client.test');
    await t.starttls();
    await t.send('EHLO client.test');
    expect(await t.authPlain(relay.user, relay.password)).toMatch(/^235/);
    expect(await t.send('MAIL FROM:<ceo@bank.test>')).toMatch(/^550 5\.7\.1 Sender <ceo@bank\.test> not allowed: user dev may not send from bank\.test/);
    expect(await t.send('MAIL FROM:<>')).toMatch(/^550 5\.7\.1/);
    expect(await t.send('MAIL FROM:<app@example.test>')).toMatch(/^250/);
    expect(await t.send('RCPT TO:<b@dest.test>')).toMatch(/^250/);
    expect(await t.data('From: ceo@bank.test\r\nSubject: x\r\n\r\nhi\r\n')).toMatch(/^550 5\.7\.1 Header From <ceo@bank\.test> not allowed/);
    await t.quit();
  });

  it('refuses percent-hack and UUCP addresses even from an authenticated user', async () => {
    const t = await session('submission');
    await t.send('EHLO client.test');
    await t.starttls();
    await t.send('EHLO client.test');
    await t.authPlain(relay.user, relay.password);
    await t.send('MAIL FROM:<app@example.test>');
    expect(await t.send('RCPT TO:<victim%elsewhere.test@dest.test>')).toMatch(/^553 5\.1\.3/);
    expect(await t.send('RCPT TO:<elsewhere.test!victim@dest.test>')).toMatch(/^553 5\.1\.3/);
    await t.quit();
  });

  it('queued nothing for any refused attempt', async () => {
    expect(await relay.spooled()).toEqual([]);
    expect(relay.delivered()).toEqual([]);
  });

  it('relays for an authenticated user from an allowed domain (and a subdomain)', async () => {
    const t = await session('submission');
    await t.send('EHLO client.test');
    await t.starttls();
    await t.send('EHLO client.test');
    await t.authPlain(relay.user, relay.password);
    expect(await t.send('MAIL FROM:<app@mail.example.test>')).toMatch(/^250/);
    expect(await t.send('RCPT TO:<b@dest.test>')).toMatch(/^250/);
    expect(await t.data(MESSAGE)).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Z]+/);
    await t.quit();
    await waitFor(() => relay.delivered().length === 1, 'delivery to the outbox');
  });
});

describe('intake: limits and message handling', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay({ limits: { maxMessageSize: 2000, maxRecipients: 3, maxConnectionsPerClient: 2, messagesPerUserPerMinute: 2 } });
  });
  afterAll(() => relay.stop());

  it('advertises SIZE, PIPELINING, 8BITMIME, SMTPUTF8 and ENHANCEDSTATUSCODES', async () => {
    const { talk } = await SmtpTalk.connect(relay.ports.open!);
    const ehlo = await talk.send('EHLO client.test');
    for (const ext of ['SIZE 2000', 'PIPELINING', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES']) expect(ehlo).toContain(ext);
    await talk.quit();
  });

  it('refuses a message over the size limit with 552 and queues nothing', async () => {
    const { talk } = await SmtpTalk.connect(relay.ports.open!);
    await talk.send('EHLO client.test');
    expect(await talk.send('MAIL FROM:<a@example.test> SIZE=5000')).toMatch(/^552/);
    await talk.send('MAIL FROM:<a@example.test>');
    await talk.send('RCPT TO:<b@dest.test>');
    expect(await talk.data(`Subject: big\r\n\r\n${'x'.repeat(3000)}\r\n`)).toMatch(/^552/);
    await talk.quit();
    expect(await relay.spooled()).toEqual([]);
  });

  it('limits recipients per message', async () => {
    const { talk } = await SmtpTalk.connect(relay.ports.open!);
    await talk.send('EHLO client.test');
    await talk.send('MAIL FROM:<a@example.test>');
    for (const r of ['r1', 'r2', 'r3']) expect(await talk.send(`RCPT TO:<${r}@dest.test>`)).toMatch(/^250/);
    expect(await talk.send('RCPT TO:<r4@dest.test>')).toBe('452 4.5.3 Too many recipients (limit 3): send the others in another message');
    // Given again, an address replaces its entry: not refused.
    expect(await talk.send('RCPT TO:<R2@dest.test>')).toMatch(/^250/);
    await talk.quit();
    expect(await relay.metricsText()).toMatch(/^mailfleet_relay_smtp_rejections_total\{reason="recipients"\} 1$/m);
  });

  it('limits connections per client address with 421', async () => {
    const a = await SmtpTalk.connect(relay.ports.open!);
    const b = await SmtpTalk.connect(relay.ports.open!);
    const c = await SmtpTalk.connect(relay.ports.open!);
    expect(a.greeting).toMatch(/^220/);
    expect(b.greeting).toMatch(/^220/);
    expect(c.greeting).toMatch(/^421 4\.7\.0 Too many connections/);
    await Promise.all([a.talk.quit(), b.talk.quit(), c.talk.quit()]);
  });

  it('limits messages per user per minute with 451 4.7.1', async () => {
    const replies: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { talk } = await SmtpTalk.connect(relay.ports.submission!);
      await talk.send('EHLO client.test');
      await talk.starttls();
      await talk.send('EHLO client.test');
      await talk.authPlain(relay.user, relay.password);
      replies.push(await talk.send('MAIL FROM:<a@example.test>'));
      await talk.quit();
    }
    expect(replies[0]).toMatch(/^250/);
    expect(replies[1]).toMatch(/^250/);
    expect(replies[2]).toMatch(/^451 4\.7\.1 Rate limit/);
  });

  it('adds Received, Message-ID and Date when the client left them out, and keeps the body as sent', async () => {
    const { talk } = await SmtpTalk.connect(relay.ports.open!);
    await talk.send('EHLO client.test');
    await talk.send('MAIL FROM:<a@example.test>');
    await talk.send('RCPT TO:<b@dest.test>');
    const reply = await talk.data('Subject: bare\r\n\r\n.leading dot\r\nline two\r\n');
    await talk.quit();
    const id = /queued as (\S+)/.exec(reply)![1]!;
    await waitFor(() => relay.delivered().length === 1, 'delivery');
    const text = relay.delivered()[0]!.toString();
    expect(text).toMatch(new RegExp(`^Received: from client\\.test \\(\\[127\\.0\\.0\\.1\\]\\)\\r\\n\\tby relay\\.test \\(mailfleet\\) with ESMTP id ${id}\\r\\n\\tfor <b@dest\\.test>;`));
    expect(text).toContain(`Message-ID: <${id}@relay.test>\r\n`);
    expect(text).toMatch(/\r\nDate: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000\r\n/);
    expect(text.endsWith('Subject: bare\r\n\r\n.leading dot\r\nline two\r\n')).toBe(true);
  });
});

describe('intake: a large message', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay();
  });
  afterAll(() => relay.stop());

  it('takes a header that spans many reads and a body past the journal, and delivers them as sent', async () => {
    // A 120 KB header (folded lines) arrives over several reads; the 600 KB body goes to a file of its own.
    const header = `From: app@example.test\r\nX-Pad: ${Array.from({ length: 1500 }, (_, i) => `part-${i}-${'p'.repeat(70)}`).join('\r\n ')}\r\nSubject: big\r\n\r\n`;
    const body = Array.from({ length: 8000 }, (_, i) => `line ${i} ${'b'.repeat(64)}`).join('\r\n') + '\r\n';
    const { talk } = await SmtpTalk.connect(relay.ports.open!);
    await talk.send('EHLO client.test');
    await talk.send('MAIL FROM:<app@example.test>');
    await talk.send('RCPT TO:<b@dest.test>');
    const reply = await talk.data(header + body);
    await talk.quit();
    expect(reply).toMatch(/^250 /);
    await waitFor(() => relay.delivered().length === 1, 'delivery');
    const text = relay.delivered()[0]!.toString();
    expect(text.endsWith(header + body)).toBe(true);
    // The client's header had no Message-ID or Date: both were added ahead of it.
    expect(text.slice(0, text.length - header.length - body.length)).toMatch(/^Received: [^]*Message-ID: <[^>]+>\r\nDate: [^\r]+\r\n$/);
  });
});

describe('intake: a client that goes away in the middle of DATA', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await startTestRelay();
  });
  afterAll(() => relay.stop());

  it('leaves no partial file behind (past the journal size, the body was going to a file) and queues nothing', async () => {
    const socket = net.connect(relay.ports.open!, '127.0.0.1');
    let replies = '';
    socket.on('data', (d: Buffer) => (replies += d.toString()));
    socket.on('error', () => undefined);
    const until = (re: RegExp) => waitFor(() => re.test(replies), re.source);
    await until(/^220 /m);
    socket.write('EHLO client.test\r\nMAIL FROM:<app@example.test>\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n');
    await until(/^354 /m);
    // ~600 KB with no final dot: past the journal size (256 KiB) the writer goes to a file in tmp/.
    socket.write(`From: app@example.test\r\n\r\n${'y'.repeat(78)}\r\n`.repeat(6000));
    const tmp = path.join(relay.dir, 'spool', 'tmp');
    await waitFor(() => fs.readdirSync(tmp).length > 0, 'a partial file in spool/tmp');
    socket.destroy();
    await waitFor(() => fs.readdirSync(tmp).length === 0, 'the partial file removed');
    expect(replies).not.toMatch(/^250 2\.0\.0/m);
    expect(await relay.spooled()).toEqual([]);
    // And the relay goes on taking mail.
    expect(await submit(relay.ports.open!, 'app@example.test', ['b@dest.test'], MESSAGE)).toMatch(/^250 /);
  });
});

describe('intake: spool below the disk floor', () => {
  it('answers 452 4.3.1, acknowledges nothing and reports not ready', async () => {
    const relay = await startTestRelay({ spool: { dir: 'spool', minFreeBytes: '100000GiB' } });
    try {
      const { talk } = await SmtpTalk.connect(relay.ports.open!);
      await talk.send('EHLO client.test');
      expect(await talk.send('MAIL FROM:<a@example.test>')).toMatch(/^452 4\.3\.1 Insufficient system storage/);
      await talk.quit();
      const res = await fetch(`http://127.0.0.1:${relay.httpPort}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.text()).toMatch(/below the floor/);
      expect(await relay.spooled()).toEqual([]);
    } finally {
      await relay.stop();
    }
  });
});
