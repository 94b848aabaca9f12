/**
 * One outbound SMTP connection, on nodemailer's SMTPConnection (which already does
 * PIPELINING, STARTTLS, AUTH, dot-stuffing and per-recipient RCPT errors), with promises
 * and per-recipient outcomes.
 */
import type { Readable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { classifyError, classifyReply, DeliveryFailure, type RecipientOutcome } from './outcome.js';
import { SmarthostAuthFailure, smtpAuthReason } from './smarthost-auth.js';

/**
 * How to authenticate: a user name and password (PLAIN or LOGIN, as offered), or an OAuth 2.0
 * access token (XOAUTH2) from `token`, which is asked again with the refused token when the
 * server refuses it (a token revoked or expired early): once, then the refusal stands.
 */
export type SmtpAuth = { user: string; pass: string } | { user: string; token: (refused?: string) => Promise<string> };

export interface SmtpClientOptions {
  host: string;
  port: number;
  /** Name for SNI and certificate checks when host is an address. */
  servername?: string;
  /** Shown in outcomes and logs, e.g. `mx.example.test[127.0.0.2]:25`. */
  remoteMta: string;
  heloName: string;
  tls: 'implicit' | 'require' | 'opportunistic' | 'none';
  verifyCertificate: boolean;
  /** Trusted CAs (PEM); omitted: Node's default store. */
  ca?: string[];
  auth?: SmtpAuth;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

/** SASL XOAUTH2's initial response (Google's and Microsoft's format): the user and the bearer token. */
export function xoauth2Response(user: string, accessToken: string): string {
  return Buffer.from(`user=${user}\x01auth=Bearer ${accessToken}\x01\x01`).toString('base64');
}

export class SmtpClient {
  private readonly conn: SMTPConnection;
  private broken = false;
  /** A transaction (MAIL FROM to the reply after DATA) is under way. */
  private busy = false;

  private constructor(private readonly options: SmtpClientOptions) {
    this.conn = new SMTPConnection({
      host: options.host,
      port: options.port,
      secure: options.tls === 'implicit',
      requireTLS: options.tls === 'require',
      ignoreTLS: options.tls === 'none',
      opportunisticTLS: options.tls === 'opportunistic',
      servername: options.servername,
      name: options.heloName,
      connectionTimeout: options.connectTimeoutMs,
      greetingTimeout: options.responseTimeoutMs,
      socketTimeout: options.responseTimeoutMs,
      allowInternalNetworkInterfaces: true,
      tls: { rejectUnauthorized: options.verifyCertificate, minVersion: 'TLSv1.2', ca: options.ca },
    });
    this.conn.on('error', () => {
      this.broken = true;
    });
    this.conn.on('end', () => {
      this.broken = true;
    });
  }

  /** Connects, says EHLO, upgrades to TLS as configured and authenticates. Throws DeliveryFailure. */
  static async connect(options: SmtpClientOptions): Promise<SmtpClient> {
    const client = new SmtpClient(options);
    try {
      // Connection errors arrive as 'error' events, not through the connect callback.
      await new Promise<void>((resolve, reject) => {
        client.conn.once('error', reject);
        client.conn.connect((err) => (err ? reject(err) : resolve()));
      });
      if (options.auth) await client.login(options.auth);
    } catch (err) {
      client.conn.close();
      if (err instanceof DeliveryFailure) throw err;
      // A refused STARTTLS reports ETLS; a certificate refused during the handshake arrives as a
      // socket error (ESOCKET) while the upgrade is still in progress.
      if ((err as NodeJS.ErrnoException).code === 'ETLS' || client.conn.upgrading) throw tlsFailure(err as SMTPConnection.SMTPError, options.remoteMta);
      // A refusal before any message (a 554 greeting, a 535 AUTH after a credential rotation)
      // says nothing about the recipients: defer, never bounce the whole queue over it.
      throw asTemporary(classifyError(err as NodeJS.ErrnoException, options.remoteMta));
    }
    return client;
  }

  private async login(auth: SmtpAuth): Promise<void> {
    const attempt = (data: SMTPConnection.AuthenticationType) =>
      new Promise<void>((resolve, reject) => {
        this.conn.once('error', reject);
        this.conn.login(data, (err) => (err ? reject(err) : resolve()));
      });
    try {
      if ('pass' in auth) return await attempt({ user: auth.user, pass: auth.pass });
      let token = await auth.token();
      let refreshed = false;
      // nodemailer's XOAUTH2 asks for a token again (isRetry) after Google's 334 challenge.
      const oauth2 = {
        getToken: (isRetry: boolean, cb: (err: Error | null, token?: string) => void) => {
          if (!isRetry) return cb(null, token);
          refreshed = true;
          auth.token(token).then((t) => cb(null, (token = t)), cb);
        },
        buildXOAuth2Token: (accessToken: string) => xoauth2Response(auth.user, accessToken),
      };
      const data = { user: auth.user, method: 'XOAUTH2', oauth2 } as unknown as SMTPConnection.AuthenticationType;
      try {
        await attempt(data);
      } catch (err) {
        // Once only: after Gmail's 334 challenge nodemailer has already tried a fresh token.
        if (refreshed || (err as SMTPConnection.SMTPError).responseCode !== 535) throw err;
        // Microsoft answers a revoked or early-expired token with 535 at once: one more try with a fresh one.
        token = await auth.token(token);
        await attempt(data);
      }
    } catch (err) {
      if (err instanceof DeliveryFailure) throw err;
      const e = err as SMTPConnection.SMTPError;
      if (e.code === 'EAUTH' && e.response) throw new SmarthostAuthFailure(smtpAuthReason(e.response), `${this.options.remoteMta} refused AUTH: ${e.response}`, this.options.remoteMta);
      throw err;
    }
  }

  get usable(): boolean {
    return !this.broken && !this.conn.destroyed;
  }

  /**
   * Whether the session is encrypted and, if so, why its certificate would not verify. Node
   * checks the chain and the name even when it does not reject, so a policy that only reports
   * (MTA-STS testing) can say what enforcing would have refused.
   */
  get tlsState(): { encrypted: boolean; certificateProblem?: string } {
    const socket = this.conn._socket;
    if (!this.conn.secure || !(socket instanceof TLSSocket)) return { encrypted: false };
    return socket.authorized ? { encrypted: true } : { encrypted: true, certificateProblem: tlsReason(String(socket.authorizationError)) };
  }

  /** Sends one message; every recipient gets an outcome. A connection-level error throws DeliveryFailure. */
  async send(sender: string, recipients: string[], body: Readable | Buffer, size: number, eightBit = false): Promise<RecipientOutcome[]> {
    const remoteMta = this.options.remoteMta;
    this.busy = true;
    // nodemailer keeps the last transaction's envelope: its RCPT refusals are this message's only if this send made a new one.
    const previous = this.envelopeState();
    try {
      const info = await new Promise<SMTPConnection.SentMessageInfo>((resolve, reject) => {
        // A connection that breaks mid-transaction reports through events, not the callback.
        const onError = (err: Error) => done(err);
        const onEnd = () => done(Object.assign(new Error('connection closed by the server'), { code: 'ECONNECTION' }));
        const done = (err: Error | null, result?: SMTPConnection.SentMessageInfo) => {
          this.conn.off('error', onError);
          this.conn.off('end', onEnd);
          if (err) reject(err);
          else resolve(result!);
        };
        this.conn.once('error', onError);
        this.conn.once('end', onEnd);
        this.conn.send({ from: sender, to: recipients, size, use8BitMime: eightBit }, Buffer.isBuffer(body) ? this.inOneWrite(body) : body, (err, result) => done(err, result));
      });
      const rejected = new Map((info.rejectedErrors ?? []).map((e) => [e.recipient ?? '', e.response ?? e.message]));
      const accepted = classifyReply(info.response);
      return recipients.map((address) => {
        const refusal = rejected.get(address);
        if (refusal !== undefined) return { address, ...classifyReply(refusal), reply: refusal, remoteMta };
        return { address, ...accepted, reply: info.response, remoteMta };
      });
    } catch (e) {
      const err = e as SMTPConnection.SMTPError;
      if (!Buffer.isBuffer(body)) body.destroy();
      // Rejections with a reply leave the connection usable only after RSET; keep it simple and
      // start afresh for the next message.
      this.broken = true;
      // Larger than the server's SIZE: nodemailer refuses it before MAIL FROM, with no reply.
      // Permanent for this server (RFC 1870), as its own 552 would be.
      if (err.code === 'EMESSAGE' && err.command === 'MAIL FROM' && !err.response) {
        return new DeliveryFailure('failed', '5.3.4', `${remoteMta} takes messages of at most ${(this.conn as unknown as { _maxAllowedSize?: number })._maxAllowedSize ?? '(its SIZE)'} bytes; this one is ${size}`, remoteMta).forRecipients(recipients);
      }
      // MAIL FROM refused: its reply is every recipient's. With PIPELINING the RCPTs went out
      // behind it and were answered 503 (no MAIL): those say nothing about the recipients.
      if (err.command?.startsWith('MAIL')) return classifyError(err, remoteMta).forRecipients(recipients);
      if (err.code === 'EENVELOPE' && err.rejectedErrors?.length && !err.command?.startsWith('MAIL')) {
        const byRecipient = new Map(err.rejectedErrors.map((r) => [r.recipient ?? '', r.response ?? r.message]));
        return recipients.map((address) => {
          const reply = byRecipient.get(address) ?? err.response ?? err.message;
          return { address, ...classifyReply(reply), reply, remoteMta };
        });
      }
      // A failure after the envelope (DATA refused, connection lost) applies to the recipients
      // the server had accepted; those refused at RCPT keep their own reply (a greylisted 450
      // must not turn into a bounce because DATA then failed with a 5xx).
      const failure = classifyError(err, remoteMta);
      const atRcpt = new Map((this.envelopeState() !== previous ? this.rcptRefusals() : []).map((r) => [r.recipient ?? '', r.response ?? r.message]));
      return recipients.map((address) => {
        const own = atRcpt.get(address);
        return own !== undefined ? { address, ...classifyReply(own), reply: own, remoteMta } : failure.forRecipients([address])[0]!;
      });
    } finally {
      this.busy = false;
    }
  }

  /**
   * A body in memory as a stream nodemailer pipes into its dot-stuffer, with the socket corked
   * while it does: the body and the final dot go out in one write, not two. Two writes cost
   * the relay a second system call and the server a second wake-up per message.
   */
  private inOneWrite(body: Buffer): Readable {
    // nodemailer only calls pipe() on what it is given (it also listens for 'error' when there is an on()).
    const source = {
      pipe: (stream: NodeJS.WritableStream) => {
        const socket = this.conn._socket;
        if (!socket) return stream.end(body);
        socket.cork();
        stream.end(body);
        // The dot-stuffer's output reaches the socket once its pipe is flowing, a tick later.
        process.nextTick(() => socket.uncork());
      },
    };
    return source as unknown as Readable;
  }

  /** RCPT refusals of the transaction in progress (nodemailer keeps them on its envelope only). */
  private rcptRefusals(): SMTPConnection.SMTPError[] {
    return this.envelopeState()?.rejectedErrors ?? [];
  }

  /** nodemailer's envelope of the last transaction it began (a new object for each). */
  private envelopeState(): { rejectedErrors?: SMTPConnection.SMTPError[] } | undefined {
    return (this.conn as unknown as { _envelope?: { rejectedErrors?: SMTPConnection.SMTPError[] } })._envelope;
  }

  /**
   * Says QUIT (or drops a broken connection) and resolves once the socket is closed, so the
   * caller counts the connection as open until the peer can no longer see it (a provider's
   * connection limit is about open sockets, not about sessions we have finished with).
   */
  close(): Promise<void> {
    // In the middle of a transaction a QUIT would land inside the message body: drop the
    // connection instead (the peer discards the unfinished message; it is sent again later).
    if (this.busy) {
      this.conn.close();
      return Promise.resolve();
    }
    const closed = new Promise<void>((resolve) => {
      if (this.broken) return resolve();
      const timer = setTimeout(() => {
        this.conn.close();
        resolve();
      }, 2000);
      this.conn.once('end', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (this.usable) this.conn.quit();
    else this.conn.close();
    return closed;
  }
}

/** STARTTLS refused or not offered, or a TLS handshake that failed (an untrusted certificate among others). */
export class TlsFailure extends DeliveryFailure {}

function tlsFailure(err: SMTPConnection.SMTPError, remoteMta: string): TlsFailure {
  // With a reply, the server answered STARTTLS with a refusal; without one, the handshake failed.
  if (err.response) return new TlsFailure('deferred', '4.7.4', `${remoteMta} did not start TLS: its reply to STARTTLS was "${err.response}"`, remoteMta);
  return new TlsFailure('deferred', '4.7.5', `TLS handshake with ${remoteMta} failed: ${tlsReason(err.message)}`, remoteMta);
}

function asTemporary(f: DeliveryFailure): DeliveryFailure {
  if (f.kind === 'deferred') return f;
  return new DeliveryFailure('deferred', `4${f.statusCode.slice(1)}`, `${f.reply} (refused before any message was sent; will retry)`, f.remoteMta);
}

/**
 * The TLS error without wrappers and hints meant for whoever runs Node (Node 24 adds "try
 * running Node.js with --use-system-ca"): the reply should say what is wrong with the peer.
 */
function tlsReason(message: string): string {
  return message.replace(/^Error initiating TLS - /, '').replace(/; if the root CA is installed locally, try running Node\.js with --use-system-ca$/, '');
}
