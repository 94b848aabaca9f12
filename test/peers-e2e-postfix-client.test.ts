// End to end: swaks into a real Postfix that relays as a client into the relay, whose file outbox holds the message intact.
import { expect, it } from 'vitest';
import { describePeer } from './peers/availability.js';
import { POSTFIX_BINARIES, startPostfix } from './peers/postfix.js';
import { runSwaks, SWAKS_BINARIES } from './peers/swaks.js';
import { useTeardown } from './peers/teardown.js';
import { dataFile, postfixReceived, prependedFields, relayReceived, RETRY, swaksSentMessage, useDataDir, wireMessage } from './support/e2e.js';
import { startTestRelay, waitFor } from './support/relay.js';

describePeer(
  'e2e: swaks -> Postfix (client) -> relay -> file outbox',
  [...SWAKS_BINARIES, ...POSTFIX_BINARIES],
  () => {
    const defer = useTeardown();
    const dataDir = useDataDir();

    it('relays through Postfix into the relay; the outbox holds the message intact with Postfix\'s Received', async () => {
      const relay = await startTestRelay({ retry: RETRY });
      defer(relay.stop);
      const postfix = await startPostfix({ relayhost: `127.0.0.1:${relay.ports.open}`, hostname: 'client.peer.test' });
      defer(postfix.stop);

      const rcpt = 'dave@dest.test';
      const lines = [
        'Date: Tue, 03 Mar 2026 11:00:00 +0000',
        'From: App <app@client.test>',
        'To: dave@dest.test',
        'Subject: through Postfix into mailfleet',
        'Message-ID: <e2e-postfix-client@client.test>',
        '',
        'Hello through Postfix.',
        '.leading dot survives two hops',
        '',
        'Bye.',
      ];
      const r = await runSwaks(['--server', '127.0.0.1', '--port', String(postfix.port), '--helo', 'app.client.test', '--from', 'app@client.test', '--to', rcpt, '--data', dataFile(dataDir(), 'pf.eml', lines)]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const sent = swaksSentMessage(r.stdout);
      expect(sent).toBe(wireMessage(lines));

      await waitFor(() => relay.delivered().length === 1, 'the message in the outbox', 15_000);
      const fields = prependedFields(relay.delivered()[0]!.toString('latin1'), sent);
      expect(fields, fields.join('')).toHaveLength(2);
      const relayField = relayReceived({ helo: 'client.peer.test', protocol: 'ESMTP', tls: false, rcpt });
      expect(fields[0]).toMatch(relayField);
      expect(fields[1]).toMatch(postfixReceived({ helo: 'app.client.test', by: 'client.peer.test', protocol: 'ESMTP', rcpt }));

      // Postfix logged the relay's queue id from its 250 reply: the two hops are one message.
      const relayId = relayField.exec(fields[0]!)?.groups?.id;
      await waitFor(async () => (await postfix.queueCount()) === 0, 'the Postfix queue to empty');
      expect(postfix.maillog()).toMatch(new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${relay.ports.open}.*status=sent \\(250 2\\.0\\.0 Ok: queued as ${relayId}\\)`));
      await waitFor(async () => (await relay.spooled()).length === 0, 'the relay spool to empty');
    });
  },
  { root: true },
);
