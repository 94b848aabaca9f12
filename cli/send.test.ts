import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { describePeer } from '../test/peers/availability.js';
import { sendCommand } from './send.js';

const USER = 'app';
const PASSWORD = 's3cret-Pa55word';
const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

let dir: string;
let tls: { key: string; cert: string; certFile: string; wrongNameCertFile: string; wrongName: { key: string; cert: string } };
let passwordFile: string;
let wrongPasswordFile: string;
const servers: SMTPServer[] = [];

/** A throwaway self-signed certificate, which is its own CA for --ca. */
function makeCertificate(name: string, altNames: string): { keyFile: string; certFile: string } {
  const keyFile = path.join(dir, `${name}.key`);
  const certFile = path.join(dir, `${name}.crt`);
  const result = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-keyout', keyFile, '-out', certFile, '-subj', `/CN=${name}`, '-addext', `subjectAltName=${altNames}`,
  ]);
  if (result.status !== 0) throw new Error(`openssl failed: ${result.stderr.toString()}`);
  return { keyFile, certFile };
}

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'mailfleet-send-'));
  passwordFile = path.join(dir, 'password');
  writeFileSync(passwordFile, `${PASSWORD}\n`);
  wrongPasswordFile = path.join(dir, 'wrong-password');
  writeFileSync(wrongPasswordFile, 'not-the-password\n');
  if (!hasOpenssl) return;
  const good = makeCertificate('localhost', 'DNS:localhost,IP:127.0.0.1');
  const wrong = makeCertificate('mail.example.invalid', 'DNS:mail.example.invalid');
  tls = {
    key: readFileSync(good.keyFile, 'utf8'),
    cert: readFileSync(good.certFile, 'utf8'),
    certFile: good.certFile,
    wrongNameCertFile: wrong.certFile,
    wrongName: { key: readFileSync(wrong.keyFile, 'utf8'), cert: readFileSync(wrong.certFile, 'utf8') },
  };
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Received {
  from: string;
  to: string[];
  data: string;
}

/** Starts smtp-server on 127.0.0.1 with a free port; accepted messages land in `received`. */
async function startServer(options: SMTPServerOptions): Promise<{ port: number; received: Received[] }> {
  const received: Received[] = [];
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    closeTimeout: 100,
    onAuth(auth, _session, callback) {
      if (auth.username === USER && auth.password === PASSWORD) callback(null, { user: USER });
      else callback(Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 }));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const { mailFrom, rcptTo } = session.envelope;
        received.push({ from: mailFrom ? mailFrom.address : '', to: rcptTo.map((r) => r.address), data: Buffer.concat(chunks).toString() });
        callback(null, 'OK: queued as TEST1');
      });
    },
    ...options,
  });
  servers.push(server);
  // A client that gives up mid-handshake makes the server emit 'error'; that is the scenario, not a failure.
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { port: (server.server.address() as AddressInfo).port, received };
}

function refusal(responseCode: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode });
}

/** A port nothing listens on: bound, read, then released. */
async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', () => resolve()));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

async function send(port: number, ...args: string[]): Promise<{ code: number; output: string; diagnosis: string }> {
  const lines: string[] = [];
  const out = { log: (line: string) => lines.push(line), error: (line: string) => lines.push(line) };
  const code = await sendCommand(['--server', `127.0.0.1:${port}`, '--from', 'app@example.com', '--to', 'someone@example.org', '--timeout', '2', ...args], out);
  const output = lines.join('\n');
  expect(output).not.toContain(PASSWORD);
  expect(output).not.toContain(Buffer.from(PASSWORD).toString('base64'));
  return { code, output, diagnosis: lines.find((l) => l.startsWith('diagnosis:')) ?? '' };
}

const withAuth = ['--user', USER, '--password-file'];

// openssl makes the certificates: in CI its absence fails the suite, elsewhere it skips loudly.
describePeer('mailfleet send over TLS', ['openssl'], () => {
  const starttlsServer = () => startServer({ key: tls.key, cert: tls.cert });

  it('sends through a STARTTLS + AUTH server and shows every step', async () => {
    const { port, received } = await starttlsServer();
    const { code, output, diagnosis } = await send(port, '--starttls', '--ca', tls.certFile, ...withAuth, passwordFile, '--subject', 'hello from the test');

    expect(code).toBe(0);
    expect(diagnosis).toBe('');
    expect(output).toContain(`* connecting to 127.0.0.1:${port} in plain text, upgrading with STARTTLS`);
    expect(output).toMatch(/^S: 220 .*ESMTP/m);
    expect(output).toMatch(/^C: EHLO /m);
    expect(output).toMatch(/^S: 250[- ]STARTTLS$/m);
    expect(output).toMatch(/^C: STARTTLS$/m);
    expect(output).toMatch(/^\* TLS TLSv1\.[23], cipher \S+/m);
    expect(output).toContain('certificate subject CN=localhost, issuer CN=localhost');
    expect(output).toContain('* certificate verified');
    expect(output).toMatch(/^S: 250[- ]AUTH LOGIN PLAIN$/m);
    expect(output).toContain('* AUTH PLAIN as "app"');
    expect(output).toMatch(/^C: AUTH PLAIN <credentials hidden>$/m);
    expect(output).toMatch(/^S: 235 /m);
    expect(output).toMatch(/^C: MAIL FROM:<app@example.com>$/m);
    expect(output).toMatch(/^C: RCPT TO:<someone@example.org>$/m);
    expect(output).toMatch(/^C: DATA$/m);
    expect(output).toMatch(/^S: 354 /m);
    expect(output).toMatch(/^S: 250 OK: queued as TEST1$/m);
    expect(output).toMatch(/^C: QUIT$/m);
    expect(output).toMatch(/^S: 221 /m);
    expect(output).toContain('sent: accepted for someone@example.org');
    // The transcript shows what happened in order: TLS before AUTH, AUTH before the envelope.
    expect(output.indexOf('C: STARTTLS')).toBeLessThan(output.indexOf('* TLS '));
    expect(output.indexOf('* TLS ')).toBeLessThan(output.indexOf('* AUTH PLAIN'));
    expect(output.indexOf('S: 235')).toBeLessThan(output.indexOf('C: MAIL FROM'));

    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ from: 'app@example.com', to: ['someone@example.org'] });
    expect(received[0]!.data).toContain('Subject: hello from the test');
  });

  it('refuses an untrusted certificate and points at --ca and --insecure', async () => {
    const { port, received } = await starttlsServer();
    const { code, output, diagnosis } = await send(port, '--starttls', ...withAuth, passwordFile);

    expect(code).toBe(1);
    expect(output).toMatch(/^error: .*self[- ]signed certificate/m);
    expect(diagnosis).toMatch(/^diagnosis: the server's certificate is not trusted/);
    expect(diagnosis).toContain('--ca FILE');
    expect(diagnosis).toContain('--insecure');
    expect(output).not.toContain('C: AUTH');
    expect(received).toHaveLength(0);
  });

  it('says when the certificate is not from the CA given with --ca', async () => {
    const { port } = await starttlsServer();
    const { code, diagnosis } = await send(port, '--starttls', '--ca', tls.wrongNameCertFile, ...withAuth, passwordFile);

    expect(code).toBe(1);
    expect(diagnosis).toContain('not signed by the CA in --ca');
  });

  it('sends with --insecure and says the certificate was not verified', async () => {
    const { port } = await starttlsServer();
    const { code, output } = await send(port, '--starttls', '--insecure', ...withAuth, passwordFile);

    expect(code).toBe(0);
    expect(output).toContain('* certificate NOT verified (--insecure): DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  it('names a certificate that does not match the host', async () => {
    const { port } = await startServer(tls.wrongName);
    const { code, diagnosis } = await send(port, '--starttls', '--ca', tls.wrongNameCertFile, ...withAuth, passwordFile);

    expect(code).toBe(1);
    expect(diagnosis).toContain('certificate does not name 127.0.0.1 (it names DNS:mail.example.invalid)');
  });

  it('stays in plain text without --starttls and keeps the password off a server that offers STARTTLS', async () => {
    const { port } = await starttlsServer();
    const { code, output, diagnosis } = await send(port, ...withAuth, passwordFile);

    expect(code).toBe(1);
    expect(output).toMatch(/^S: 250[- ]STARTTLS$/m);
    expect(output).not.toContain('C: STARTTLS');
    expect(output).not.toContain('C: AUTH');
    expect(diagnosis).toContain('the password was not sent in plain text');
    expect(diagnosis).toContain('Add --starttls');
  });

  it('asks for credentials when the server requires AUTH', async () => {
    const { port, received } = await starttlsServer();
    const { code, output, diagnosis } = await send(port, '--starttls', '--ca', tls.certFile);

    expect(code).toBe(1);
    expect(output).toMatch(/^S: 530 /m);
    expect(diagnosis).toContain('requires authentication');
    expect(diagnosis).toContain('--user');
    expect(output).toMatch(/^C: QUIT$/m);
    expect(received).toHaveLength(0);
  });

  it('reports a wrong password (535) without printing it', async () => {
    const { port } = await starttlsServer();
    const { code, output, diagnosis } = await send(port, '--starttls', '--ca', tls.certFile, ...withAuth, wrongPasswordFile);

    expect(code).toBe(1);
    expect(output).toMatch(/^S: 535 /m);
    expect(output).not.toContain('not-the-password');
    expect(diagnosis).toContain('wrong user name or password');
  });

  it('hides every credential line of an AUTH LOGIN exchange', async () => {
    const { port } = await startServer({ key: tls.key, cert: tls.cert, authMethods: ['LOGIN'] });
    const { code, output } = await send(port, '--starttls', '--ca', tls.certFile, ...withAuth, passwordFile);

    expect(code).toBe(0);
    expect(output).toContain('* AUTH LOGIN as "app"');
    expect(output).toMatch(/^C: AUTH LOGIN\nS: 334 \S+\nC: <credentials hidden>\nS: 334 \S+\nC: <credentials hidden>\nS: 235 /m);
  });

  it('sends over implicit TLS with --tls', async () => {
    const { port } = await startServer({ secure: true, key: tls.key, cert: tls.cert, authOptional: true });
    const { code, output } = await send(port, '--tls', '--ca', tls.certFile);

    expect(code).toBe(0);
    expect(output).toContain('with implicit TLS');
    expect(output.indexOf('* TLS TLSv1.')).toBeLessThan(output.indexOf('S: 220 '));
  });

  it('recognises an implicit-TLS port spoken to in plain text', async () => {
    const { port } = await startServer({ secure: true, key: tls.key, cert: tls.cert, authOptional: true });
    const { code, output, diagnosis } = await send(port, '--timeout', '1');

    expect(code).toBe(1);
    expect(output).not.toMatch(/^S: /m);
    expect(diagnosis).toContain('no greeting within 1s');
    expect(diagnosis).toContain('--tls');
  });
});

describe('mailfleet send in plain text', () => {
  const plainServer = (options: SMTPServerOptions = {}) => startServer({ authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], ...options });

  it('sends to a plain server without TLS', async () => {
    const { port, received } = await plainServer();
    const { code, output } = await send(port);

    expect(code).toBe(0);
    expect(output).toContain('in plain text (no STARTTLS');
    expect(output).not.toContain('* TLS');
    expect(received).toHaveLength(1);
  });

  it('tells --tls against a plain port to use --starttls', async () => {
    const { port } = await plainServer();
    const { code, diagnosis } = await send(port, '--tls', '--insecure');

    expect(code).toBe(1);
    expect(diagnosis).toContain('answered the TLS handshake in plain text');
    expect(diagnosis).toContain('--starttls');
  });

  it('says when STARTTLS is not offered', async () => {
    const { port } = await plainServer();
    const { code, output, diagnosis } = await send(port, '--starttls');

    expect(code).toBe(1);
    expect(output).toMatch(/^C: STARTTLS$/m);
    expect(diagnosis).toContain('does not offer STARTTLS');
  });

  it('explains relay denied (550 5.7.1 on RCPT)', async () => {
    const { port, received } = await plainServer({
      onRcptTo: (_address, _session, callback) => callback(refusal(550, '5.7.1 Relay access denied')),
    });
    const { code, output, diagnosis } = await send(port);

    expect(code).toBe(1);
    expect(output).toMatch(/^S: 550 5\.7\.1 Relay access denied$/m);
    expect(diagnosis).toContain('will not relay to someone@example.org for an unauthenticated client');
    expect(diagnosis).toContain('--user');
    expect(received).toHaveLength(0);
  });

  it('explains a refused sender domain on MAIL FROM', async () => {
    const { port } = await plainServer({
      onMailFrom: (_address, _session, callback) => callback(refusal(550, '5.7.1 Sender domain example.com not allowed')),
    });
    const { code, diagnosis } = await send(port);

    expect(code).toBe(1);
    expect(diagnosis).toContain('does not accept mail from app@example.com');
  });

  it('explains a refused sender domain after DATA', async () => {
    const { port } = await plainServer({
      onData: (stream, _session, callback) => {
        stream.resume();
        stream.on('end', () => callback(refusal(550, '5.7.1 Sender domain not allowed for this user')));
      },
    });
    const { code, output, diagnosis } = await send(port);

    expect(code).toBe(1);
    expect(output).toMatch(/^S: 354 /m);
    expect(diagnosis).toContain('does not accept mail from app@example.com');
  });

  it('explains a message that is too large (552)', async () => {
    const { port } = await plainServer({ size: 100, rejectOversized: true });
    const { code, output, diagnosis } = await send(port);

    expect(code).toBe(1);
    expect(output).toMatch(/^S: 250 SIZE 100$|^S: 250-SIZE 100$/m);
    expect(diagnosis).toContain('too large');
    expect(diagnosis).toContain('SIZE 100 bytes');
  });

  it('explains a temporary failure (4xx) as try later', async () => {
    const { port } = await plainServer({
      onMailFrom: (_address, _session, callback) => callback(refusal(452, '4.3.1 Insufficient system storage')),
    });
    const { code, diagnosis } = await send(port);

    expect(code).toBe(1);
    expect(diagnosis).toContain('temporarily refused MAIL FROM');
    expect(diagnosis).toContain('try again later');
  });

  it('reports recipients refused while others were accepted', async () => {
    const { port, received } = await plainServer({
      onRcptTo: (address, _session, callback) =>
        callback(address.address.endsWith('@example.org') ? null : refusal(550, '5.7.1 Relay access denied')),
    });
    const { code, output, diagnosis } = await send(port, '--to', 'other@elsewhere.test');

    expect(code).toBe(1);
    expect(output).toContain('accepted for someone@example.org but refused for other@elsewhere.test');
    expect(diagnosis).toContain('will not relay to other@elsewhere.test');
    expect(received).toHaveLength(1);
  });

  it('authenticates in plain text only where the server offers no TLS, and warns', async () => {
    const { port } = await startServer({ disabledCommands: ['STARTTLS'], allowInsecureAuth: true });
    const { code, output } = await send(port, ...withAuth, passwordFile);

    expect(code).toBe(0);
    expect(output).toContain('* warning: the server offers no TLS here, so the password goes in plain text');
    expect(output).toMatch(/^S: 235 /m);
  });

  it('says when the server offers no AUTH at all', async () => {
    const { port } = await plainServer();
    const { code, output, diagnosis } = await send(port, ...withAuth, passwordFile);

    expect(code).toBe(1);
    expect(output).not.toContain('C: AUTH');
    expect(diagnosis).toContain('offers neither AUTH nor STARTTLS');
  });

  it('diagnoses a closed port', async () => {
    const port = await closedPort();
    const { code, output, diagnosis } = await send(port);

    expect(code).toBe(1);
    expect(output).toContain(`* connecting to 127.0.0.1:${port}`);
    expect(diagnosis).toContain(`nothing is listening on 127.0.0.1:${port}`);
  });
});

describe('mailfleet send arguments', () => {
  async function usage(...argv: string[]): Promise<{ code: number; errors: string }> {
    const errors: string[] = [];
    const code = await sendCommand(argv, { log: () => undefined, error: (line) => errors.push(line) });
    return { code, errors: errors.join('\n') };
  }
  const base = ['--server', '127.0.0.1:2525', '--from', 'a@example.com', '--to', 'b@example.com'];

  it('rejects a missing password file clearly', async () => {
    const { code, errors } = await usage(...base, '--user', 'app', '--password-file', path.join(dir, 'missing'));
    expect(code).toBe(2);
    expect(errors).toContain(`cannot read --password-file ${path.join(dir, 'missing')}: no such file`);
  });

  it('rejects a --ca file without a certificate', async () => {
    const { code, errors } = await usage(...base, '--starttls', '--ca', passwordFile);
    expect(code).toBe(2);
    expect(errors).toContain('holds no PEM certificate');
  });

  it('rejects bad combinations and values', async () => {
    expect((await usage(...base, '--starttls', '--tls')).errors).toContain('either --starttls or --tls');
    expect((await usage(...base, '--insecure')).errors).toContain('only apply to TLS');
    expect((await usage(...base, '--user', 'app')).errors).toContain('--user and --password-file go together');
    expect((await usage('--server', 'localhost', '--from', 'a@x', '--to', 'b@x')).errors).toContain('--server must be HOST:PORT');
    expect((await usage(...base, '--timeout', '0')).errors).toContain('--timeout must be a positive number');
    expect((await usage(...base, '--bogus')).code).toBe(2);
    expect((await usage('--server', '127.0.0.1:25')).errors).toContain('--from is required');
  });
});
