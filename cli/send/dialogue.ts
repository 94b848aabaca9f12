/**
 * `mailfleet send`'s SMTP dialogue over nodemailer's SMTPConnection: its options from the
 * command line, each call as a step that also settles on the connection's 'error' event, AUTH
 * only where the password is safe to send, and a polite QUIT.
 */
import type { ConnectionOptions } from 'node:tls';
import type SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { SendOptions } from './args.js';
import { advertisedAuth, offersStarttls, SendCheck, SUPPORTED_AUTH, type SmtpError, type TlsMode } from './diagnose.js';
import type { SessionLog } from './transcript.js';

export function connectionOptions(options: SendOptions, session: SessionLog): SMTPConnection.Options {
  const timeout = options.timeoutSeconds * 1000;
  const tls: ConnectionOptions = { rejectUnauthorized: !options.insecure };
  if (options.ca) tls.ca = options.ca;
  return {
    host: options.host,
    port: options.port,
    // Set explicitly: SMTPConnection would otherwise assume implicit TLS on port 465.
    secure: options.mode === 'tls',
    // Without --starttls the session must stay in plain text so the user sees what the server does there.
    requireTLS: options.mode === 'starttls',
    ignoreTLS: options.mode !== 'starttls',
    name: options.helo,
    tls,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    logger: session.logger,
    // Commands and replies, without the message body that `debug` would add.
    transactionLog: true,
  };
}

export function describeMode(mode: TlsMode): string {
  if (mode === 'tls') return 'with implicit TLS';
  if (mode === 'starttls') return 'in plain text, upgrading with STARTTLS';
  return 'in plain text (no STARTTLS: add --starttls to upgrade)';
}

/**
 * Runs one SMTPConnection call. Some failures (timeouts, TLS and socket errors) arrive only as
 * an 'error' event, not through the call's callback, so both settle the step.
 */
export function step<T>(conn: SMTPConnection, start: (done: (err?: SmtpError | null, value?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onError = (err: SmtpError) => reject(err);
    conn.once('error', onError);
    start((err, value) => {
      conn.off('error', onError);
      if (err) reject(err);
      else resolve(value as T);
    });
  });
}

export async function authenticate(conn: SMTPConnection, options: SendOptions, session: SessionLog): Promise<void> {
  const { capabilities, tlsEstablished } = session.facts;
  // SMTPConnection would send the password whatever the server offered; these checks keep it
  // off the wire when the server never asked for it, or could have encrypted it first.
  if (!tlsEstablished && offersStarttls(capabilities)) {
    throw checkFailure(SendCheck.AUTH_NEEDS_TLS, 'not sending the password in plain text to a server that offers STARTTLS');
  }
  const offered = advertisedAuth(capabilities);
  if (!offered) throw checkFailure(SendCheck.AUTH_NOT_OFFERED, 'the server does not offer AUTH');
  if (!tlsEstablished) session.note('warning: the server offers no TLS here, so the password goes in plain text');
  const method = SUPPORTED_AUTH.find((m) => offered.includes(m));
  if (!method) throw checkFailure(SendCheck.AUTH_NO_COMMON_METHOD, `no supported AUTH mechanism among ${offered.join(', ')}`);
  session.note(`AUTH ${method} as ${JSON.stringify(options.user)}`);
  await step<boolean>(conn, (done) => conn.login({ user: options.user, pass: options.password, method }, done));
  session.facts.authenticated = true;
}

function checkFailure(code: string, message: string): SmtpError {
  const err: SmtpError = new Error(message);
  err.code = code;
  return err;
}

/** Ends the session politely when it is still open; bounded by the socket timeout. */
export async function quit(conn: SMTPConnection): Promise<void> {
  if (conn.destroyed) return;
  await new Promise<void>((resolve) => {
    conn.once('end', resolve);
    conn.quit();
  });
}
