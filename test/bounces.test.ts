/**
 * Bounces and complaints after the 250, with Postfix as the recipient domain's MX (found
 * through dnsmasq by the relay's mx route): it accepts a message from the relay (sent from a
 * VERP return path), finds later that the mailbox does not
 * exist, and sends its own RFC 3464 bounce to that return path, whose MX is the relay's
 * `bounces` listener. The webhook hears of the bounce, the address is suppressed, and a
 * feedback-loop complaint about another message does the same; the listener takes nothing
 * else and relays nothing.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePeer } from './peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq, type Dnsmasq } from './peers/dnsmasq.js';
import { freePort } from './peers/ports.js';
import { POSTFIX_BINARIES, startPostfix, type PostfixInstance } from './peers/postfix.js';
import { startWebhookReceiver, type WebhookReceiver } from './peers/webhook-receiver.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const KEY = 'webhook-key-0123456789abcdefghijklmnopqrstuv';
const RETURN_PATH_KEY = 'fleet-return-path-key-0123456789abcdefghij';

describePeer('bounces and complaints to the return path, with Postfix as the MX', [...POSTFIX_BINARIES, ...DNSMASQ_BINARIES], () => {
  let dir: string;
  let postfix: PostfixInstance;
  let relay: TestRelay;
  let receiver: WebhookReceiver;
  let bouncesPort: number;
  let dns: Dnsmasq;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-bounces-'));
    fs.writeFileSync(path.join(dir, 'webhook-key'), KEY);
    fs.writeFileSync(path.join(dir, 'return-path-key'), RETURN_PATH_KEY);
    receiver = await startWebhookReceiver({ keys: { k1: KEY } });
    bouncesPort = await freePort();
    // dest.test is Postfix's own domain, where no mailbox exists: it takes the message, then bounces it to the return path (via the relay's bounces listener).
    postfix = await startPostfix({ relayhost: `127.0.0.1:${bouncesPort}`, hostname: 'mx.dest.test', extraMain: { mydestination: 'dest.test', local_transport: 'error:5.1.1 mailbox unknown', smtpd_reject_unlisted_recipient: 'no' } });
    dns = await startDnsmasq({ mx: [{ domain: 'dest.test', host: 'mx.dest.test', preference: 10 }], hosts: [{ name: 'mx.dest.test', address: '127.0.0.1' }] });
    relay = await startTestRelay({
      listeners: [
        { name: 'open', address: '127.0.0.1', port: 0, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] },
        { name: 'bounces', address: '127.0.0.1', port: bouncesPort, tls: 'none', auth: 'none', role: 'bounces' },
      ],
      senderDomains: [{ domain: 'example.test', returnPath: 'bounces.example.test' }],
      bounces: { keyFile: path.join(dir, 'return-path-key') },
      delivery: { route: { type: 'mx', dnsServers: [dns.server], port: postfix.port } },
      events: { webhooks: [{ name: 'app', url: receiver.url, signingKeys: [{ id: 'k1', secretFile: path.join(dir, 'webhook-key') }], maxBackoff: '1s' }] },
    });
  });

  afterAll(async () => {
    await relay?.stop();
    await postfix?.stop();
    await dns?.stop();
    await receiver?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const of = (type: string, recipient: string) => receiver.events.filter((e) => e.type === type && e.recipient === recipient);

  it('a bounce Postfix sends after its 250 becomes a bounced event and a suppression', async () => {
    expect(await submit(relay.ports.open!, 'app@example.test', ['gone@dest.test'], 'From: app@example.test\r\nSubject: later\r\nMessage-ID: <later@example.test>\r\n\r\nHi.\r\n')).toMatch(/^250/);
    await waitFor(() => of('bounced', 'gone@dest.test').length === 1, 'the bounce at the webhook', 30_000);
    const delivered = of('delivered', 'gone@dest.test');
    const bounced = of('bounced', 'gone@dest.test')[0]!;
    // Postfix took it (250), then reported the bounce to the return path the relay sent from.
    expect(delivered).toHaveLength(1);
    expect(delivered[0]!.reply).toMatchObject({ code: 250, remoteMta: expect.stringContaining('mx.dest.test') });
    expect(postfix.maillog()).toMatch(new RegExp(`from=<b\\+${delivered[0]!.queueId.toLowerCase()}-[a-z2-7]{10}@bounces\\.example\\.test>`));
    expect(bounced).toMatchObject({
      queueId: delivered[0]!.queueId,
      senderDomain: 'example.test',
      messageId: '<later@example.test>',
      reply: { enhancedCode: '5.1.1', text: expect.stringContaining('mailbox unknown') },
      bounce: { type: 'permanent', category: 'invalid_recipient' },
      report: { kind: 'dsn', reportingMta: 'mx.dest.test' },
    });
    // The next message to it is refused at RCPT.
    const again = await submit(relay.ports.open!, 'app@example.test', ['gone@dest.test'], 'Subject: again\r\n\r\nHi.\r\n').catch((e: Error) => e.message);
    expect(again).toMatch(/550 5\.1\.1 <gone@dest\.test>: suppressed since .* after a hard bounce/);
  });

  it('a feedback-loop complaint about a message becomes a complained event and a suppression', async () => {
    expect(await submit(relay.ports.open!, 'app@example.test', ['reader@dest.test'], 'From: app@example.test\r\nSubject: news\r\nMessage-ID: <news@example.test>\r\n\r\nNews.\r\n')).toMatch(/^250/);
    // Postfix's local transport bounces everything: wait for that, then complain as a mailbox provider's feedback loop would.
    await waitFor(() => of('bounced', 'reader@dest.test').length === 1, 'the first report', 30_000);
    const returnPath = new RegExp(`from=<(b\\+${of('delivered', 'reader@dest.test')[0]!.queueId.toLowerCase()}-[a-z2-7]{10}@bounces\\.example\\.test)>`).exec(postfix.maillog())![1]!;
    const arf = [
      'From: feedback@isp.test',
      'To: fbl@bounces.example.test',
      'Subject: FW: news',
      'MIME-Version: 1.0',
      'Content-Type: multipart/report; report-type=feedback-report; boundary="part"',
      '',
      '--part',
      'Content-Type: text/plain; charset=us-ascii',
      '',
      'This is an email abuse report for an email message received from IP 192.0.2.1.',
      '--part',
      'Content-Type: message/feedback-report',
      '',
      'Feedback-Type: abuse',
      'User-Agent: ISP-FBL/1.0',
      'Version: 1',
      'Original-Rcpt-To: <reader@dest.test>',
      'Source-IP: 192.0.2.1',
      '',
      '--part',
      'Content-Type: message/rfc822',
      'Content-Disposition: inline',
      '',
      `Return-Path: <${returnPath}>`,
      'From: app@example.test',
      'To: reader@dest.test',
      'Subject: news',
      'Message-ID: <news@example.test>',
      '',
      'News.',
      '--part--',
      '',
    ].join('\r\n');
    expect(await submit(bouncesPort, '', ['fbl@bounces.example.test'], arf)).toMatch(/^250 .*Report taken: 1 event/);
    await waitFor(() => of('complained', 'reader@dest.test').length === 1, 'the complaint at the webhook');
    expect(of('complained', 'reader@dest.test')[0]).toMatchObject({ senderDomain: 'example.test', messageId: '<news@example.test>', report: { kind: 'complaint', feedbackType: 'abuse', userAgent: 'ISP-FBL/1.0' } });
    const again = await submit(relay.ports.open!, 'app@example.test', ['reader@dest.test'], 'Subject: again\r\n\r\nHi.\r\n').catch((e: Error) => e.message);
    expect(again).toMatch(/550 5\.1\.1 <reader@dest\.test>: suppressed since .* after a complaint \(complaint \(abuse\) reported by ISP-FBL\/1\.0\)/);
    expect(await relay.metricsText()).toMatch(/mailfleet_relay_sender_domain_reports_total\{sender_domain="example.test",type="complained"\} 1/);
  });

  it('takes nothing but reports to its return paths, and relays nothing', async () => {
    const queued = await postfix.queueCount();
    const refused = async (rcpt: string) => (await submit(bouncesPort, 'spammer@evil.test', [rcpt], 'Subject: relay me\r\n\r\nx\r\n').catch((e: Error) => e.message)) as string;
    for (const rcpt of ['victim@dest.test', 'victim@example.test', 'postmaster@bounces.example.test', 'b+mxc7cr3x76ea7000007-aaaaaaaaaa@bounces.example.test', 'fbl@other.test', '"victim@dest.test"@bounces.example.test', 'fbl%victim@dest.test@bounces.example.test']) {
      expect(await refused(rcpt), rcpt).toMatch(/^5\d\d/);
    }
    const ignored = await submit(bouncesPort, '', ['fbl@bounces.example.test'], 'Subject: out of office\r\n\r\nI am away.\r\n');
    expect(ignored).toMatch(/^250 .*not understood: ignored/);
    expect(await postfix.queueCount()).toBe(queued);
    expect(relay.delivered()).toEqual([]);
    expect((await relay.spooled()).length).toBe(0);
  });
});
