/** `mailfleet send` in plain text and its arguments, against smtp-server stand-ins. */
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { SMTPServerOptions } from 'smtp-server';
import { sendCommand } from './send.js';
import { closedPort, dir, passwordFile, refusal, send, startServer, useSendHarness, withAuth } from '../test/support/send-harness.js';

useSendHarness();

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

  it('takes --config alone for the smarthost, and only a smarthost route', async () => {
    const config = (route: string) => {
      const file = path.join(dir, 'relay.yaml');
      writeFileSync(file, `spool: { dir: spool }\nlisteners: [{ name: open, port: 2525, tls: none, auth: none }]\ndelivery:\n  route: ${route}\n`);
      return file;
    };
    const smarthost = config('{ type: smarthost, host: smtp.example.com, credentialsFile: missing }');
    expect((await usage('--config', smarthost, '--server', '127.0.0.1:25', '--tls', '--from', 'a@x', '--to', 'b@x')).errors).toContain('drop --server, --tls');
    expect((await usage('--config', smarthost, '--from', 'a@x', '--to', 'b@x')).errors).toContain('MF_CREDENTIALS_UNREADABLE: cannot read smarthost credentials');
    const mx = config('{ type: mx }');
    expect((await usage('--config', mx, '--from', 'a@x', '--to', 'b@x')).errors).toContain('delivery.route is mx, not smarthost');
    const { code, errors } = await usage('--config', path.join(dir, 'no-such.yaml'), '--from', 'a@x', '--to', 'b@x');
    expect(code).toBe(2);
    expect(errors).toContain('cannot read config file');
  });

  it('checks the OAuth 2.0 options by the rules of delivery.route.oauth2, naming the flag', async () => {
    const oauth2 = [...base, '--user', 'relay@contoso.com', '--oauth2'];
    expect((await usage(...oauth2, 'yahoo')).errors).toMatch(/--oauth2: Invalid option: expected one of "microsoft"\|"google"\|"generic"/);
    expect((await usage(...oauth2, 'generic', '--client-id', 'c', '--client-secret-file', passwordFile)).errors).toContain('--token-url: provider generic needs tokenUrl');
    expect((await usage(...oauth2, 'generic', '--client-id', 'c', '--client-secret-file', passwordFile, '--token-url', 'http://login.example.com/token')).errors).toContain('--token-url: the token endpoint must be https');
    expect((await usage(...oauth2, 'google', '--service-account-file', passwordFile, '--tenant', 't')).errors).toContain('--tenant: provider google takes its client from serviceAccountFile, not tenant');
    expect((await usage(...base, '--oauth2', 'microsoft')).errors).toContain('--oauth2 needs --user MAILBOX');
    expect((await usage(...oauth2, 'microsoft', '--password-file', passwordFile)).errors).toContain('either --oauth2 or --password-file');
    expect((await usage(...base, '--tenant', 'contoso.onmicrosoft.com')).errors).toContain('--tenant applies only with --oauth2');
  });
});
