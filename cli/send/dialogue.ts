/**
 * `mailfleet send`'s SMTP dialogue over nodemailer's SMTPConnection: its options from the
 * command line, each call as a step that also settles on the connection's 'error' event, AUTH
 * (a password, or an OAuth 2.0 token with XOAUTH2) only where it is safe to send, and a polite QUIT.
 */
import type { ConnectionOptions } from 'node:tls';
import type SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { TokenSource } from '../../relay/delivery/oauth2/token-source.js';
import { xoauth2Response } from '../../relay/delivery/smtp-client.js';
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

/** `tokens`: with --oauth2, where the access tokens come from (AUTH XOAUTH2 instead of the password). */
export async function authenticate(conn: SMTPConnection, options: SendOptions, session: SessionLog, tokens?: TokenSource): Promise<void> {
  const { capabilities, tlsEstablished } = session.facts;
  const secret = tokens ? 'the access token' : 'the password';
  // SMTPConnection would send the credentials whatever the server offered; these checks keep
  // them off the wire when the server never asked for them, or could have encrypted them first.
  if (!tlsEstablished && offersStarttls(capabilities)) {
    throw checkFailure(SendCheck.AUTH_NEEDS_TLS, `not sending ${secret} in plain text to a server that offers STARTTLS`);
  }
  const offered = advertisedAuth(capabilities);
  if (!offered) throw checkFailure(SendCheck.AUTH_NOT_OFFERED, 'the server does not offer AUTH');
  if (!tlsEstablished) session.note(`warning: the server offers no TLS here, so ${secret} goes in plain text`);
  const method = tokens ? offered.find((m) => m === 'XOAUTH2') : SUPPORTED_AUTH.find((m) => offered.includes(m));
  if (!method) throw checkFailure(SendCheck.AUTH_NO_COMMON_METHOD, `no supported AUTH mechanism among ${offered.join(', ')}`);
  session.note(`AUTH ${method} as ${JSON.stringify(options.user)}${tokens ? ' with the access token' : ''}`);
  if (tokens) await loginXOAuth2(conn, options.user!, tokens, session);
  else await step<boolean>(conn, (done) => conn.login({ user: options.user, pass: options.password, method }, done));
  session.facts.authenticated = true;
}

type TokenCallback = (err: Error | null, token?: string) => void;

/**
 * AUTH XOAUTH2. As the relay does (relay/delivery/smtp-client.ts), a token the smarthost refuses
 * (Microsoft's 535 at once, or Gmail's 334 challenge) is replaced by a fresh one once, said in
 * the transcript; then the refusal stands.
 */
async function loginXOAuth2(conn: SMTPConnection, user: string, tokens: TokenSource, session: SessionLog): Promise<void> {
  let token = await tokens.token();
  let renewed = false;
  let tokenFailure: Error | undefined;
  const renew = async () => {
    renewed = true;
    session.note('the smarthost refused the token: asking the token endpoint for a fresh one and trying once more, as the relay does');
    token = await tokens.token(token);
    return token;
  };
  const oauth2 = {
    // nodemailer asks again (isRetry) after answering a 334 challenge.
    getToken: (isRetry: boolean, cb: TokenCallback) => {
      if (!isRetry) return cb(null, token);
      renew().then(
        (fresh) => cb(null, fresh),
        (err: Error) => cb((tokenFailure = err)),
      );
    },
    // SASL XOAUTH2's initial response, as the relay builds it.
    buildXOAuth2Token: (accessToken: string) => xoauth2Response(user, accessToken),
  };
  const login = () => step<boolean>(conn, (done) => conn.login({ user, method: 'XOAUTH2', oauth2 } as unknown as SMTPConnection.AuthenticationType, done));
  try {
    await login();
  } catch (err) {
    // nodemailer wraps a failed token request in an EAUTH of its own: report the token step's.
    if (tokenFailure) throw tokenFailure;
    if (renewed || (err as SmtpError).responseCode !== 535) throw err;
    await renew();
    await login();
  }
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
