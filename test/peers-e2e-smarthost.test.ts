// End to end: swaks (STARTTLS + AUTH) into the relay and out through a real Postfix smarthost to a scripted sink; exact bytes, Received fields and DSNs.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePeer } from './peers/availability.js';
import { POSTFIX_BINARIES, startPostfix, type PostfixInstance } from './peers/postfix.js';
import { startScriptedSink, type ReceivedMessage, type ScriptedSink } from './peers/scripted-sink.js';
import { SWAKS_BINARIES } from './peers/swaks.js';
import { DATE, dataFile, postfixReceived, prependedFields, PYTHON, relayReceived, RETRY, runSwaksAuth, swaksSentMessage, useDataDir, wireMessage } from './support/e2e.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';

describePeer(
  'e2e: swaks (STARTTLS + AUTH) -> relay -> smarthost Postfix -> sink',
  [...SWAKS_BINARIES, ...POSTFIX_BINARIES, PYTHON],
  () => {
    const dataDir = useDataDir();
    let sink: ScriptedSink;
    let postfix: PostfixInstance;
    let relay: TestRelay;

    beforeAll(async () => {
      sink = await startScriptedSink({ hostname: 'final.dest.test' });
      // The default mynetworks (127.0.0.0/8) lets the relay on 127.0.0.1 relay through it.
      postfix = await startPostfix({ relayhost: `127.0.0.1:${sink.port}`, hostname: 'mx.dest.test' });
      relay = await startTestRelay({
        delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: postfix.port, tls: 'none' } },
        retry: RETRY,
      });
    });
    afterAll(async () => {
      await relay?.stop();
      await postfix?.stop();
      await sink?.stop();
    });

    const swaksIn = (rcpt: string, data: string) =>
      runSwaksAuth(
        ['--server', '127.0.0.1', '--port', String(relay.ports.submission), '--helo', 'swaks.client.test', '--tls', '--from', 'alice@client.test', '--to', rcpt, '--data', data],
        relay.user,
        relay.password,
      );

    async function arrived(rcpt: string): Promise<ReceivedMessage> {
      await waitFor(() => sink.messages.some((m) => m.envelope.to.includes(rcpt)), `the message for ${rcpt} at the sink`, 15_000);
      return sink.messages.find((m) => m.envelope.to.includes(rcpt))!;
    }

    it('delivers the exact bytes swaks sent, with only the relay\'s and Postfix\'s Received in front', async () => {
      const rcpt = 'bob@dest.test';
      const lines = [
        'Date: Tue, 03 Mar 2026 10:00:00 +0000',
        'From: Alice Example <alice@client.test>',
        'To: Bob <bob@dest.test>',
        'Subject: end to end through real peers,',
        '\tfolded with a tab',
        'Message-ID: <e2e-full-headers@client.test>',
        'X-Custom:   spaces kept  ',
        'MIME-Version: 1.0',
        'Content-Type: text/plain; charset=us-ascii',
        '',
        'First line.',
        '.a line that starts with a dot',
        '..two dots',
        '.',
        'From the middle of a line, mbox would quote this',
        '',
        '   indented line with trailing blanks   ',
        `a long line: ${'x'.repeat(900)}`,
        'last line',
      ];
      const r = await swaksIn(rcpt, dataFile(dataDir(), 'full.eml', lines));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/TLS started/);
      expect(r.stdout).toMatch(/^<~ +235 2\.7\.0 Authentication successful/m);
      const sent = swaksSentMessage(r.stdout);
      expect(sent).toBe(wireMessage(lines));
      const queuedAs = /250 2\.0\.0 Ok: queued as (\S+)/.exec(r.stdout)?.[1];
      expect(queuedAs).toBeDefined();

      const msg = await arrived(rcpt);
      expect(msg.envelope).toEqual({ from: 'alice@client.test', to: [rcpt] });
      const fields = prependedFields(msg.raw.toString('latin1'), sent);
      expect(fields, fields.join('')).toHaveLength(2);
      expect(fields[0]).toMatch(postfixReceived({ helo: 'relay.test', by: 'mx.dest.test', protocol: 'ESMTP', rcpt }));
      const relayField = relayReceived({ helo: 'swaks.client.test', protocol: 'ESMTPSA', tls: true, rcpt });
      expect(fields[1]).toMatch(relayField);
      expect(relayField.exec(fields[1]!)?.groups?.id).toBe(queuedAs);

      await waitFor(async () => (await relay.spooled()).length === 0, 'the relay spool to empty');
      await waitFor(async () => (await postfix.queueCount()) === 0, 'the Postfix queue to empty');
      expect(postfix.maillog()).toMatch(/status=sent/);
    });

    it('adds Message-ID and Date (relay) only where swaks left them out; nothing else changes', async () => {
      const rcpt = 'carol@dest.test';
      const lines = ['From: alice@client.test', 'To: carol@dest.test', 'Subject: no Message-ID, no Date', '', 'Body without', 'those headers.'];
      const r = await swaksIn(rcpt, dataFile(dataDir(), 'bare.eml', lines));
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const sent = swaksSentMessage(r.stdout);
      expect(sent).toBe(wireMessage(lines));
      const queuedAs = /250 2\.0\.0 Ok: queued as (\S+)/.exec(r.stdout)?.[1];

      const msg = await arrived(rcpt);
      const fields = prependedFields(msg.raw.toString('latin1'), sent);
      expect(fields.map((f) => f.slice(0, f.indexOf(':'))), fields.join('')).toEqual(['Received', 'Received', 'Message-ID', 'Date']);
      expect(fields[0]).toMatch(postfixReceived({ helo: 'relay.test', by: 'mx.dest.test', protocol: 'ESMTP', rcpt }));
      expect(fields[1]).toMatch(relayReceived({ helo: 'swaks.client.test', protocol: 'ESMTPSA', tls: true, rcpt }));
      expect(fields[2]).toBe(`Message-ID: <${queuedAs}@relay.test>\r\n`);
      expect(fields[3]).toMatch(new RegExp(`^Date: ${DATE}\\r\\n$`));
    });
  },
  { root: true },
);
