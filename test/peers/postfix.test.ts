import { existsSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import nodemailer from 'nodemailer';
import { expect, it } from 'vitest';
import { describePeer } from './availability.js';
import { canConnect, freePort } from './ports.js';
import { POSTFIX_BINARIES, startPostfix } from './postfix.js';
import { startScriptedSink } from './scripted-sink.js';
import { useTeardown } from './teardown.js';
import { waitUntil } from './wait.js';

async function send(port: number, from: string, to: string, text: string): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    await transport.sendMail({ envelope: { from, to: [to] }, from, to, subject: 'peer test', messageId: '<peer-test@mailfleet.test>', text });
  } finally {
    transport.close();
  }
}

/** PIDs still running in the process group that the Postfix master led. */
function groupMembers(pgid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return fields[0] !== 'Z' && Number(fields[2]) === pgid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

describePeer(
  'postfix',
  POSTFIX_BINARIES,
  () => {
    const defer = useTeardown();

    it('relays as a client into a next hop, unchanged apart from its Received header; stop leaves nothing', async () => {
      const sink = await startScriptedSink();
      defer(sink.stop);
      let t = performance.now();
      const pf = await startPostfix({ relayhost: `127.0.0.1:${sink.port}`, hostname: 'client.peer.test' });
      const startMs = performance.now() - t;
      defer(pf.stop); // harmless after the explicit stop below

      // A line starting with "." checks that dot-stuffing survives both hops.
      await send(pf.port, 'alice@client.test', 'bob@dest.test', 'line one\n.line with a dot\nlast line\n');
      await sink.waitForMessages(1);
      const msg = sink.messages[0];
      expect(msg?.envelope).toEqual({ from: 'alice@client.test', to: ['bob@dest.test'] });
      const raw = msg?.raw.toString('utf8') ?? '';
      expect(raw).toMatch(/^Received: from [^\r\n]*\r\n\tby client\.peer\.test \(Postfix\)/);
      expect(raw).toContain('Message-ID: <peer-test@mailfleet.test>\r\n');
      expect(raw).toContain('\r\n\r\nline one\r\n.line with a dot\r\nlast line\r\n');
      await waitUntil(async () => (await pf.queueCount()) === 0, { what: 'an empty queue' });
      expect(pf.maillog()).toMatch(/status=sent/);

      const pgid = pf.pid;
      expect(Number(readFileSync(`${pf.dir}/spool/pid/master.pid`, 'utf8').trim())).toBe(pgid);
      expect(groupMembers(pgid).length).toBeGreaterThanOrEqual(3); // master, qmgr, pickup, ...
      t = performance.now();
      await pf.stop();
      const stopMs = performance.now() - t;
      expect(groupMembers(pgid)).toEqual([]);
      expect(existsSync(pf.dir)).toBe(false);
      expect(await canConnect(pf.port)).toBe(false);
      console.log(`postfix start ${startMs.toFixed(0)} ms, stop ${stopMs.toFixed(0)} ms`);
    });

    it('keeps mail it cannot deliver (queueCount) and delivers it on flush()', async () => {
      const hopPort = await freePort(); // nothing listens here yet
      const pf = await startPostfix({ relayhost: `127.0.0.1:${hopPort}` });
      defer(pf.stop);
      await send(pf.port, 'a@client.test', 'b@dest.test', 'deferred then delivered\n');
      await waitUntil(() => /status=deferred/.test(pf.maillog()), { what: 'a deferral in the maillog' });
      expect(await pf.queueCount()).toBe(1);

      const sink = await startScriptedSink({ port: hopPort });
      defer(sink.stop);
      await pf.flush();
      await sink.waitForMessages(1);
      expect(sink.messages[0]?.raw.toString()).toContain('deferred then delivered');
      await waitUntil(async () => (await pf.queueCount()) === 0, { what: 'an empty queue' });
    });

    it('works as a destination: accepts its relay_domains from strangers, refuses to relay elsewhere', async () => {
      const sink = await startScriptedSink();
      defer(sink.stop);
      // 127.0.0.1 is not in mynetworks: this instance behaves like an MX on the Internet.
      const dest = await startPostfix({
        relayhost: `127.0.0.1:${sink.port}`,
        mynetworks: '127.0.0.2/32',
        hostname: 'mx.dest.test',
        extraMain: { relay_domains: 'dest.test' },
      });
      defer(dest.stop);
      const client = await startPostfix({ relayhost: `127.0.0.1:${dest.port}`, hostname: 'client.peer.test' });
      defer(client.stop);

      await send(client.port, 'alice@client.test', 'bob@dest.test', 'through two postfixes\n');
      await sink.waitForMessages(1);
      const raw = sink.messages[0]?.raw.toString() ?? '';
      expect(raw.match(/^Received: /gm)).toHaveLength(2);
      expect(raw).toContain('by mx.dest.test (Postfix)');
      expect(raw).toContain('by client.peer.test (Postfix)');

      await expect(send(dest.port, 'x@client.test', 'y@elsewhere.test', 'no\n')).rejects.toThrow(/Relay access denied/);
    });

    it('says why when it cannot start, and leaves nothing behind', async () => {
      const port = await freePort();
      const squatter = net.createServer().listen(port, '127.0.0.1');
      defer(() => new Promise<void>((r) => squatter.close(() => r())));
      const before = readdirSync(tmpdir()).filter((f) => f.startsWith('mailfleet-postfix-'));
      await expect(startPostfix({ port })).rejects.toThrow(new RegExp(`fatal: bind 127.0.0.1 port ${port}: Address already in use`));
      expect(readdirSync(tmpdir()).filter((f) => f.startsWith('mailfleet-postfix-'))).toEqual(before);
    });
  },
  { root: true },
);
