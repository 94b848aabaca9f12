/** `mailfleet send` over TLS (STARTTLS, implicit TLS, certificate checks) against smtp-server stand-ins. */
import { expect, it } from 'vitest';
import { describePeer } from '../test/peers/availability.js';
import { passwordFile, send, startServer, tls, useSendHarness, withAuth, wrongPasswordFile } from '../test/support/send-harness.js';

useSendHarness();

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

