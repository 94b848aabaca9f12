/**
 * The engine on real sockets, with handlers that take everything: the protocol behaviour and
 * the hardening it keeps from smtp-server (the listener's own decisions are tested in test/).
 */
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { selfSignedCert } from '../../../test/peers/tls.js';
import { waitUntil } from '../../../test/peers/wait.js';
import type { DataStream, Session } from './session.js';
import { SmtpEngine, type EngineOptions } from './server.js';

let engine: SmtpEngine | undefined;
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  // A paused server socket does not see the client's FIN: close the sessions as the listener's drain would.
  for (const c of engine?.connections ?? []) (c as unknown as { socket: net.Socket }).socket.destroy();
  if (engine) await new Promise((r) => engine!.server.close(r));
  engine = undefined;
});

interface Received {
  mails: string[];
  bodies: { body: Buffer; sizeExceeded: boolean }[];
}

async function start(overrides: Partial<EngineOptions> = {}): Promise<{ port: number; got: Received }> {
  const got: Received = { mails: [], bodies: [] };
  engine = new SmtpEngine({
    name: 'engine.test',
    implicitTls: false,
    starttls: false,
    size: 1000,
    maxClients: 100,
    socketTimeout: 10_000,
    greetingDelayMs: 0,
    authEnabled: false,
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: false,
    onConnect: (_s, cb) => cb(),
    onAuth: (auth, _s, cb) => cb(null, auth.password === 'secret' ? { user: auth.username } : {}),
    onMailFrom: (a, _s, cb) => {
      got.mails.push(a.address);
      cb();
    },
    onRcptTo: (_a, _s, cb) => cb(),
    onData: (stream: DataStream, _s: Session, cb) => {
      const parts: Buffer[] = [];
      stream.on('data', (c: Buffer) => parts.push(c));
      stream.on('end', () => {
        got.bodies.push({ body: Buffer.concat(parts), sizeExceeded: stream.sizeExceeded });
        cb(null, stream.sizeExceeded ? undefined : '2.0.0 Ok: queued');
      });
    },
    onClose: () => undefined,
    ...overrides,
  });
  await new Promise<void>((r) => engine!.listen(0, '127.0.0.1', r));
  return { port: (engine.server.address() as net.AddressInfo).port, got };
}

/** A raw client: what it sent, all it has read, and whether the server closed. */
function client(port: number): { socket: net.Socket; text: () => string; closed: () => boolean } {
  const socket = net.connect(port, '127.0.0.1');
  sockets.push(socket);
  let text = '';
  let closed = false;
  socket.on('data', (c) => (text += c.toString()));
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  return { socket, text: () => text, closed: () => closed };
}

const lines = (text: string) => text.split('\r\n').filter(Boolean);

describe('the SMTP engine', () => {
  it('answers commands pipelined in one write in order, the body and the commands behind it too', async () => {
    const { port, got } = await start();
    const c = client(port);
    await waitUntil(() => c.text().startsWith('220 engine.test ESMTP'));
    c.socket.write('EHLO client.test\r\nMAIL FROM:<a@example.test> BODY=8BITMIME\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nRSET\r\nQUIT\r\n');
    await waitUntil(c.closed, { what: 'the close after QUIT' });
    const replies = lines(c.text()).filter((l) => !l.startsWith('250-'));
    expect(replies).toEqual(['220 engine.test ESMTP', '250 SIZE 1000', '250 2.1.0 Accepted', '250 2.1.5 Accepted', '354 End data with <CR><LF>.<CR><LF>', '250 2.0.0 Ok: queued', '250 2.0.0 Flushed', '221 2.0.0 Bye']);
    expect(got.bodies[0]!.body.toString()).toBe('Subject: x\r\n\r\n.dot\r\n');
  });

  it('closes a client that talks before the greeting with 421, greeting it never', async () => {
    const { port, got } = await start({ greetingDelayMs: 300 });
    const c = client(port);
    c.socket.write('EHLO early.test\r\nMAIL FROM:<a@example.test>\r\n');
    await waitUntil(c.closed);
    expect(lines(c.text())).toEqual(['421 4.4.2 engine.test You talk too soon']);
    expect(got.mails).toEqual([]);
  });

  it('runs nothing sent after QUIT', async () => {
    const { port, got } = await start();
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    c.socket.write('HELO a.test\r\nQUIT\r\nMAIL FROM:<a@example.test>\r\n');
    await waitUntil(c.closed);
    expect(lines(c.text()).slice(1)).toEqual(['250 engine.test Nice to meet you, [127.0.0.1]', '221 2.0.0 Bye']);
    expect(got.mails).toEqual([]);
  });

  it('closes a session after ten unknown commands, and one that sends an HTTP request', async () => {
    const { port } = await start();
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    c.socket.write('XYZZY\r\n'.repeat(12));
    await waitUntil(c.closed);
    const replies = lines(c.text()).slice(1);
    expect(replies).toEqual([...Array(9).fill('500 5.5.2 Error: command not recognized'), '421 4.4.2 Error: too many unrecognized commands']);
    const h = client(port);
    await waitUntil(() => h.text().includes('220 '));
    h.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitUntil(h.closed);
    expect(lines(h.text()).slice(1)).toEqual(['421 4.4.2 HTTP requests not allowed']);
  });

  it('stops reading from a client that pipelines without reading the replies, and answers every command once it reads', async () => {
    const { port } = await start();
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    const server = [...engine!.connections][0] as unknown as { socket: net.Socket; reader: { buffered: number }; waitingDrain: boolean };
    c.socket.pause();
    // HELP's reply is ten times the command: the replies outgrow the kernel's buffers long before the commands do.
    const count = 300_000;
    c.socket.write('HELP\r\n'.repeat(count));
    await waitUntil(() => server.waitingDrain, { what: 'the server to wait for the client to read its replies' });
    expect(server.socket.isPaused()).toBe(true);
    // The commands wait in the kernel, and the replies in our buffer are bounded by the socket's, not by what the client sent.
    expect(server.socket.bytesRead).toBeLessThan(count * 6);
    expect(server.reader.buffered).toBeLessThanOrEqual(128 * 1024);
    expect(server.socket.writableLength).toBeLessThan(1024 * 1024);
    c.socket.resume();
    await waitUntil(() => (c.text().match(/214 2\.0\.0 See/g) ?? []).length === count, { timeoutMs: 60_000, what: 'every HELP answered' });
  });

  it('stops reading a client that keeps sending while a handler is at work', async () => {
    const { port } = await start({ onMailFrom: () => undefined });
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    const server = [...engine!.connections][0] as unknown as { socket: net.Socket; reader: { buffered: number } };
    c.socket.write(`HELO a.test\r\nMAIL FROM:<a@example.test>\r\n${'NOOP\r\n'.repeat(500_000)}`);
    await waitUntil(() => server.socket.isPaused(), { what: 'the server to stop reading' });
    expect(server.socket.bytesRead).toBeLessThan(3_000_000);
    expect(server.reader.buffered).toBeLessThanOrEqual(256 * 1024);
  });

  it('answers a body refused before its end once the end came, and goes on with the next command', async () => {
    const { port } = await start({ onData: (stream, _s, cb) => cb(Object.assign(new Error('5.7.1 not this one'), { responseCode: 550 })) });
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    c.socket.write('HELO a.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n');
    await waitUntil(() => c.text().includes('354 '));
    c.socket.write(`${'x'.repeat(100_000)}\r\n.\r\nNOOP\r\n`);
    await waitUntil(() => c.text().includes('250 2.0.0 OK'));
    expect(lines(c.text()).slice(-2)).toEqual(['550 5.7.1 not this one', '250 2.0.0 OK']);
  });

  it('marks a body over the size limit and keeps none of what is past it', async () => {
    const { port, got } = await start({ onData: (stream, _s, cb) => {
      const parts: Buffer[] = [];
      stream.on('data', (b: Buffer) => parts.push(b));
      stream.on('end', () => {
        got.bodies.push({ body: Buffer.concat(parts), sizeExceeded: stream.sizeExceeded });
        cb(Object.assign(new Error('5.3.4 too big'), { responseCode: 552 }));
      });
    } });
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    c.socket.write(`HELO a.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n${'y'.repeat(5000)}\r\n.\r\n`);
    await waitUntil(() => c.text().includes('552 '));
    expect(got.bodies[0]!.sizeExceeded).toBe(true);
    expect(got.bodies[0]!.body.length).toBeLessThanOrEqual(1000);
  });

  it('offers AUTH only after STARTTLS, refuses it before, and logs in over TLS', async () => {
    const cert = await selfSignedCert('engine.test');
    const refusals: string[] = [];
    const { port } = await start({ starttls: true, authEnabled: true, key: Buffer.from(cert.key), cert: Buffer.from(cert.cert), onBuiltinRefusal: (name) => refusals.push(name) });
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    c.socket.write('EHLO a.test\r\nAUTH PLAIN AGEAc2VjcmV0\r\n');
    await waitUntil(() => c.text().includes('538 '));
    expect(c.text()).toContain('250-STARTTLS');
    expect(c.text()).not.toContain('AUTH PLAIN LOGIN');
    expect(refusals).toEqual(['tlsRequired']);
    c.socket.write('STARTTLS\r\n');
    await waitUntil(() => c.text().includes('220 2.0.0 Ready to start TLS'));
    c.socket.removeAllListeners('data');
    const secure = tls.connect({ socket: c.socket, rejectUnauthorized: false, servername: 'engine.test' });
    sockets.push(secure);
    let text = '';
    secure.on('data', (d) => (text += d.toString()));
    await new Promise((r) => secure.once('secureConnect', r));
    secure.write(`EHLO a.test\r\nAUTH PLAIN ${Buffer.from('\0alice\0secret').toString('base64')}\r\nMAIL FROM:<a@example.test>\r\n`);
    await waitUntil(() => text.includes('250 2.1.0'));
    expect(text).toContain('250-AUTH PLAIN LOGIN');
    expect(text).toContain('235 2.7.0 Authentication successful');
  });

  it('speaks TLS from the first byte on an implicit-TLS port, and offers a renewed certificate to new sessions', async () => {
    const first = await selfSignedCert('engine.test');
    const { port } = await start({ implicitTls: true, authEnabled: true, key: Buffer.from(first.key), cert: Buffer.from(first.cert) });
    const session = async () => {
      const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, servername: 'engine.test' });
      sockets.push(socket);
      let text = '';
      socket.on('data', (d) => (text += d.toString()));
      await new Promise((r) => socket.once('secureConnect', r));
      await waitUntil(() => text.includes('220 '));
      socket.write('EHLO a.test\r\n');
      await waitUntil(() => text.includes('250 SIZE'));
      const fingerprint = socket.getPeerX509Certificate()!.fingerprint256;
      socket.end('QUIT\r\n');
      return { text, fingerprint };
    };
    const before = await session();
    // TLS already: AUTH is offered at once, STARTTLS is not.
    expect(before.text).toContain('250-AUTH PLAIN LOGIN');
    expect(before.text).not.toContain('STARTTLS');
    expect(before.fingerprint).toBe(new crypto.X509Certificate(first.cert).fingerprint256);
    const renewed = await selfSignedCert('engine.test');
    engine!.updateSecureContext({ key: Buffer.from(renewed.key), cert: Buffer.from(renewed.cert) });
    expect((await session()).fingerprint).toBe(new crypto.X509Certificate(renewed.cert).fingerprint256);
  });

  it('on an implicit-TLS port, counts sockets still in their handshake against maxClients and gives a handshake a deadline', async () => {
    const cert = await selfSignedCert('engine.test');
    const { port } = await start({ implicitTls: true, maxClients: 3, socketTimeout: 1500, key: Buffer.from(cert.key), cert: Buffer.from(cert.cert) });
    const silent = [client(port), client(port), client(port)];
    await waitUntil(() => (engine!.server as unknown as { _connections: number })._connections === 3, { what: 'three sockets in their handshake' });
    const fourth = client(port);
    await waitUntil(fourth.closed, { timeoutMs: 1000, what: 'the socket past maxClients to be closed' });
    expect(silent.some((c) => c.closed())).toBe(false);
    await waitUntil(() => silent.every((c) => c.closed()), { timeoutMs: 5000, what: 'the silent handshakes to time out' });
  });

  it('takes only the first verdict on a body: a handler that answers twice never answers the next message', async () => {
    let n = 0;
    const { port } = await start({
      onData: (stream, _s, cb) => {
        const which = ++n;
        stream.on('data', () => undefined);
        stream.on('end', () => {
          cb(null, `2.0.0 message ${which}`);
          // A buggy handler answers again while the next message is on its way.
          if (which === 1) setImmediate(() => cb(null, '2.0.0 stray'));
        });
      },
    });
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    const mail = 'MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n';
    c.socket.write(`HELO a.test\r\n${mail}one\r\n.\r\n${mail}`);
    await waitUntil(() => (c.text().match(/354 /g) ?? []).length === 2);
    await new Promise((r) => setImmediate(r));
    c.socket.write('two\r\n.\r\n');
    await waitUntil(() => c.text().includes('message 2'));
    expect(lines(c.text()).filter((l) => l.startsWith('250 2.0.0 m') || l.includes('stray'))).toEqual(['250 2.0.0 message 1', '250 2.0.0 message 2']);
  });

  it('reads the body of a message whose handler threw, answers 451 after it, and goes on', async () => {
    const errors: unknown[] = [];
    const { port } = await start({
      onData: () => {
        throw new Error('handler bug');
      },
    });
    engine!.on('error', (e) => errors.push(e));
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    c.socket.write('HELO a.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nbody\r\n.\r\nNOOP\r\n');
    await waitUntil(() => c.text().includes('250 2.0.0 OK'));
    expect(lines(c.text()).slice(-3)).toEqual(['354 End data with <CR><LF>.<CR><LF>', '451 4.3.0 Error: internal server error', '250 2.0.0 OK']);
    expect(errors).toHaveLength(1);
  });

  it('meets the session deadline of a client that trickles a line a byte at a time and never ends it', async () => {
    const deadline = Date.now() + 400;
    const { port } = await start({ sessionTimeoutMs: () => deadline - Date.now() });
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    const trickle = setInterval(() => c.socket.write('N'), 100);
    try {
      await waitUntil(c.closed, { timeoutMs: 5000, what: 'the session to be closed at its deadline' });
    } finally {
      clearInterval(trickle);
    }
    expect(lines(c.text()).slice(1)).toEqual(['421 4.4.2 Timeout - closing connection']);
  });

  it('takes a large body sent, without waiting for 354, behind a handler that is slow to answer', async () => {
    const { port, got } = await start({ size: 0, onRcptTo: (_a, _s, cb) => setTimeout(() => cb(), 200) });
    const c = client(port);
    await waitUntil(() => c.text().includes('220 '));
    const body = `Subject: big\r\n\r\n${'z'.repeat(998)}\r\n`.repeat(300);
    c.socket.write(`HELO a.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n${body}.\r\nQUIT\r\n`);
    await waitUntil(c.closed, { what: 'the 221' });
    expect(lines(c.text()).slice(-3)).toEqual(['354 End data with <CR><LF>.<CR><LF>', '250 2.0.0 Ok: queued', '221 2.0.0 Bye']);
    expect(got.bodies[0]!.body.toString()).toBe(body);
  });
});
