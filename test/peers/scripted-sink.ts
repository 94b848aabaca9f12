import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerError, type SMTPServerSession } from 'smtp-server';
import { freePort } from './ports.js';
import { waitUntil } from './wait.js';

export interface SinkReply {
  code: number;
  message: string;
}

export interface SinkEnvelope {
  from: string;
  to: string[];
}

export interface ReceivedMessage {
  envelope: SinkEnvelope;
  /** The DATA bytes exactly as received (CRLF line ends, dot-stuffing removed). */
  raw: Buffer;
}

export interface ScriptedSinkOptions {
  port?: number;
  /**
   * Per RCPT; `attempt` counts how often this recipient was offered (1-based, all sessions).
   * undefined or a code below 400 accepts (250); 4xx/5xx refuse with that code and text.
   */
  replies?: (ctx: { attempt: number; rcpt: string; from: string }) => SinkReply | undefined;
  /** Per MAIL FROM: undefined or below 400 accepts; 4xx/5xx refuse it (the RCPTs a pipelining client sent behind it then get 503). */
  mailReply?: (ctx: { from: string }) => SinkReply | undefined;
  /** Advertise SIZE with this limit (bytes). */
  size?: number;
  /** Per DATA; `attempt` counts DATA transactions (1-based, all sessions). Below 400: 250 + text. */
  dataReply?: (ctx: { attempt: number; envelope: SinkEnvelope; raw: Buffer }) => SinkReply | undefined;
  /** Offer STARTTLS with this key and certificate (PEM); without it STARTTLS is not offered. */
  starttls?: { key: string | Buffer; cert: string | Buffer };
  /** Name in the greeting and EHLO reply. */
  hostname?: string;
  /** Address to listen on (default 127.0.0.1): several sinks can share a port on 127.0.0.x. */
  address?: string;
  /** Wait this long before answering each DATA (a slow destination, so connections overlap). */
  dataDelayMs?: number;
}

export interface ScriptedSink {
  port: number;
  /** Accepted messages, in order of acceptance. */
  readonly messages: ReceivedMessage[];
  /** TCP connections accepted so far. */
  readonly connections: number;
  /** TCP connections open now. */
  readonly open: number;
  /** Most TCP connections open at the same time. */
  readonly maxConcurrent: number;
  /** Session errors (failed TLS handshakes, resets); kept, never thrown. */
  readonly errors: Error[];
  waitForMessages(n: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function smtpError(reply: SinkReply): SMTPServerError {
  const err: SMTPServerError = new Error(reply.message);
  err.responseCode = reply.code;
  return err;
}

const envelopeOf = (session: SMTPServerSession): SinkEnvelope => ({
  from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
  to: session.envelope.rcptTo.map((r) => r.address),
});

/** An SMTP destination on loopback that keeps exact message bytes and replies as scripted. */
export async function startScriptedSink(opts: ScriptedSinkOptions = {}): Promise<ScriptedSink> {
  const messages: ReceivedMessage[] = [];
  const rcptAttempts = new Map<string, number>();
  let dataAttempts = 0;
  let connections = 0;
  let open = 0;
  let maxConcurrent = 0;

  const server = new SMTPServer({
    name: opts.hostname ?? 'sink.peer.test',
    logger: false,
    authOptional: true,
    disableReverseLookup: true,
    disabledCommands: opts.starttls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    ...(opts.starttls ? { key: opts.starttls.key, cert: opts.starttls.cert } : {}),
    // Clients such as Postfix keep idle connections cached; do not wait 30 s for them on stop.
    closeTimeout: 300,
    ...(opts.size ? { size: opts.size } : {}),
    onMailFrom(address, _session, callback) {
      const reply = opts.mailReply?.({ from: address.address });
      callback(reply && reply.code >= 400 ? smtpError(reply) : null);
    },
    onRcptTo(address, session, callback) {
      const attempt = (rcptAttempts.get(address.address) ?? 0) + 1;
      rcptAttempts.set(address.address, attempt);
      const reply = opts.replies?.({ attempt, rcpt: address.address, from: envelopeOf(session).from });
      callback(reply && reply.code >= 400 ? smtpError(reply) : null);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks);
        const envelope = envelopeOf(session);
        const reply = opts.dataReply?.({ attempt: ++dataAttempts, envelope, raw });
        setTimeout(() => {
          if (reply && reply.code >= 400) return callback(smtpError(reply));
          messages.push({ envelope, raw });
          callback(null, reply?.message);
        }, opts.dataDelayMs ?? 0);
      });
    },
  });
  // smtp-server emits per-session failures (e.g. a client refusing our certificate) as
  // 'error'; unhandled, they would crash the test run.
  const errors: Error[] = [];
  server.on('error', (err: Error) => errors.push(err));
  // Count at the TCP level: smtp-server only reports a session after its 100 ms greeting delay.
  server.server.on('connection', (socket: Socket) => {
    connections++;
    maxConcurrent = Math.max(maxConcurrent, ++open);
    socket.once('close', () => open--);
  });

  const port = opts.port ?? (await freePort());
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, opts.address ?? '127.0.0.1', () => resolve());
  });

  let stopping: Promise<void> | undefined;
  return {
    port,
    messages,
    errors,
    get connections() {
      return connections;
    },
    get open() {
      return open;
    },
    get maxConcurrent() {
      return maxConcurrent;
    },
    waitForMessages: (n, timeoutMs = 15_000) =>
      waitUntil(() => messages.length >= n, { timeoutMs, what: `${n} message(s) at the scripted sink (have ${messages.length})` }),
    stop: () => (stopping ??= new Promise<void>((resolve) => server.close(() => resolve()))),
  };
}
