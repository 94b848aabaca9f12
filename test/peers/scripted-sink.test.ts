import net from 'node:net';
import nodemailer from 'nodemailer';
import { describe, expect, it } from 'vitest';
import { describePeer } from './availability.js';
import { canConnect } from './ports.js';
import { startScriptedSink } from './scripted-sink.js';
import { useTeardown } from './teardown.js';
import { selfSignedCert } from './tls.js';
import { waitUntil } from './wait.js';

/** A bare SMTP client: sends each command after the previous reply, returns all replies. */
async function dialogue(port: number, commands: string[]): Promise<string[]> {
  const socket = net.connect(port, '127.0.0.1');
  let buffer = '';
  const replies: string[] = [];
  const nextReply = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = /(?:^|\r\n)(\d{3}) [^\r\n]*\r\n/.exec(buffer);
        if (!m) return;
        const reply = buffer.slice(0, m.index + m[0].length);
        buffer = buffer.slice(reply.length);
        socket.off('data', onData);
        resolve(reply.trim());
      };
      const onData = (d: Buffer): void => {
        buffer += d.toString('latin1');
        check();
      };
      socket.on('data', onData);
      socket.once('error', reject);
      check();
    });
  replies.push(await nextReply());
  for (const command of commands) {
    socket.write(command);
    replies.push(await nextReply());
  }
  socket.end();
  return replies;
}

const DATA = 'Subject: exact\r\n\r\nline 1\r\n..starts with a dot\r\nbare\nLF\r\n.\r\n';

describe('scripted sink', () => {
  const defer = useTeardown();

  it('keeps the exact DATA bytes (dot-stuffing removed) and the envelope', async () => {
    const sink = await startScriptedSink();
    defer(sink.stop);
    const replies = await dialogue(sink.port, ['EHLO c.test\r\n', 'MAIL FROM:<a@c.test>\r\n', 'RCPT TO:<b@d.test>\r\n', 'RCPT TO:<c@d.test>\r\n', 'DATA\r\n', DATA, 'QUIT\r\n']);
    expect(replies[0]).toMatch(/^220 sink\.peer\.test/);
    expect(replies.slice(2, 6).map((r) => r.slice(0, 3))).toEqual(['250', '250', '250', '354']);
    expect(replies[6]).toMatch(/^250/);
    expect(sink.messages).toEqual([
      { envelope: { from: 'a@c.test', to: ['b@d.test', 'c@d.test'] }, raw: Buffer.from('Subject: exact\r\n\r\nline 1\r\n.starts with a dot\r\nbare\nLF\r\n') },
    ]);
  });

  it('replies per RCPT and per DATA as scripted, with attempt counters', async () => {
    const sink = await startScriptedSink({
      replies: ({ attempt, rcpt }) => (rcpt === 'busy@d.test' && attempt === 1 ? { code: 451, message: '4.2.1 try later' } : rcpt === 'gone@d.test' ? { code: 550, message: '5.1.1 gone' } : undefined),
      dataReply: ({ attempt }) => (attempt === 1 ? { code: 452, message: '4.3.1 full' } : { code: 250, message: 'queued as X1' }),
    });
    defer(sink.stop);
    const mail = (rcpt: string): string[] => ['EHLO c.test\r\n', 'MAIL FROM:<a@c.test>\r\n', `RCPT TO:<${rcpt}>\r\n`];
    expect((await dialogue(sink.port, mail('busy@d.test')))[3]).toMatch(/^451 4\.2\.1 try later/);
    expect((await dialogue(sink.port, mail('busy@d.test')))[3]).toMatch(/^250/);
    expect((await dialogue(sink.port, mail('gone@d.test')))[3]).toMatch(/^550 5\.1\.1 gone/);
    const send = [...mail('ok@d.test'), 'DATA\r\n', 'Subject: x\r\n\r\nbody\r\n.\r\n'];
    expect((await dialogue(sink.port, send))[5]).toMatch(/^452 4\.3\.1 full/);
    expect(sink.messages).toHaveLength(0);
    expect((await dialogue(sink.port, send))[5]).toMatch(/^250 queued as X1/);
    expect(sink.messages).toHaveLength(1);
  });

  it('counts connections and the most open at once; stop closes the port', async () => {
    const sink = await startScriptedSink();
    const sockets = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<net.Socket>((resolve) => {
            const s = net.connect(sink.port, '127.0.0.1', () => resolve(s));
          }),
      ),
    );
    await waitUntil(() => sink.open === 3);
    sockets.forEach((s) => s.destroy());
    await waitUntil(() => sink.open === 0);
    await dialogue(sink.port, ['QUIT\r\n']);
    expect(sink.connections).toBe(4);
    expect(sink.maxConcurrent).toBe(3);
    await sink.stop();
    expect(await canConnect(sink.port)).toBe(false);
  });
});

describePeer('scripted sink with STARTTLS', ['openssl'], () => {
  const defer = useTeardown();

  it('offers STARTTLS with the given certificate only when asked to', async () => {
    const cert = await selfSignedCert('sink.peer.test');
    defer(cert.cleanup);
    const sink = await startScriptedSink({ starttls: cert });
    defer(sink.stop);
    const plain = await startScriptedSink();
    defer(plain.stop);
    expect((await dialogue(plain.port, ['EHLO c.test\r\n']))[1]).not.toContain('STARTTLS');
    expect((await dialogue(sink.port, ['EHLO c.test\r\n']))[1]).toContain('STARTTLS');

    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: sink.port, requireTLS: true, tls: { ca: cert.cert, servername: 'sink.peer.test' } });
    defer(() => transport.close());
    await transport.sendMail({ from: 'a@c.test', to: 'b@d.test', subject: 'over tls', text: 'secret' });
    expect(sink.messages[0]?.raw.toString()).toContain('Subject: over tls');
  });
});
