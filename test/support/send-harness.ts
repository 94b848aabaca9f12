/** The stand-in servers, certificates and password files the `mailfleet send` tests share (cli/send*.test.ts). */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { sendCommand } from '../../cli/send.js';

export const USER = 'app';
export const PASSWORD = 's3cret-Pa55word';
export const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

/** The suite's scratch directory (certificates, password files). */
export let dir: string;
export let tls: { key: string; cert: string; certFile: string; wrongNameCertFile: string; wrongName: { key: string; cert: string } };
export let passwordFile: string;
export let wrongPasswordFile: string;
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

/** Registers the suite's hooks: certificates and password files before, servers closed after each test, files removed at the end. */
export function useSendHarness(): void {
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
}

export interface Received {
  from: string;
  to: string[];
  data: string;
}

/** Starts smtp-server on 127.0.0.1 with a free port; accepted messages land in `received`. */
export async function startServer(options: SMTPServerOptions): Promise<{ port: number; received: Received[] }> {
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

export function refusal(responseCode: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode });
}

/** A port nothing listens on: bound, read, then released. */
export async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', () => resolve()));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

export async function send(port: number, ...args: string[]): Promise<{ code: number; output: string; diagnosis: string }> {
  const lines: string[] = [];
  const out = { log: (line: string) => lines.push(line), error: (line: string) => lines.push(line) };
  const code = await sendCommand(['--server', `127.0.0.1:${port}`, '--from', 'app@example.com', '--to', 'someone@example.org', '--timeout', '2', ...args], out);
  const output = lines.join('\n');
  expect(output).not.toContain(PASSWORD);
  expect(output).not.toContain(Buffer.from(PASSWORD).toString('base64'));
  return { code, output, diagnosis: lines.find((l) => l.startsWith('diagnosis:')) ?? '' };
}

export const withAuth = ['--user', USER, '--password-file'];

