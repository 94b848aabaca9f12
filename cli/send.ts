/**
 * `mailfleet send`: sends one test message and prints the SMTP session step by step, then, if
 * it failed, a diagnosis a person can act on. Built on nodemailer's SMTPConnection: its
 * transaction log is the transcript, and its errors carry the command and reply that failed.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { TLSSocket, type Certificate, type ConnectionOptions } from 'node:tls';
import { format, parseArgs } from 'node:util';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type { ExternalLogger, LogEntry, LogLevel } from 'nodemailer/lib/shared/index.js';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { advertisedAuth, diagnose, offersStarttls, SendCheck, SUPPORTED_AUTH, type SessionFacts, type SmtpError, type TlsMode } from './diagnose.js';

export interface Output {
  log(line: string): void;
  error(line: string): void;
}

export const SEND_USAGE = `usage: mailfleet send --server HOST:PORT [--starttls | --tls] [--user U --password-file F]
                     [--insecure] [--ca FILE] --from A --to B [--to C ...]
                     [--subject S] [--body TEXT] [--helo NAME] [--timeout SECONDS]

Sends one test message and prints the SMTP session as it happens.
  --server HOST:PORT    server to talk to ([::1]:587 for IPv6)
  --starttls            upgrade with STARTTLS and fail if the server does not offer it
  --tls                 TLS from the first byte (implicit TLS, usually port 465)
                        without either, the session stays in plain text
  --user U              authenticate as U (AUTH PLAIN, LOGIN or CRAM-MD5)
  --password-file F     file holding the password (its trailing newline is ignored)
  --ca FILE             trust the CA certificates in FILE (PEM) for the server certificate
  --insecure            do not verify the server certificate (testing only)
  --helo NAME           name sent with EHLO (default: this host's name)
  --timeout SECONDS     longest wait to set the session up, and then for each reply (default 20)
Exit status: 0 sent, 1 the server or network failed (with a diagnosis), 2 bad arguments.`;

const DEFAULT_TIMEOUT_SECONDS = 20;

interface SendOptions {
  host: string;
  port: number;
  mode: TlsMode;
  user: string | undefined;
  password: string | undefined;
  insecure: boolean;
  ca: string | undefined;
  from: string;
  to: string[];
  subject: string;
  body: string;
  helo: string | undefined;
  timeoutSeconds: number;
}

/** A mistake on the command line: reported with the usage text and exit code 2. */
class UsageError extends Error {}

/** Runs `mailfleet send` with the arguments after `send`; resolves to the exit code. */
export async function sendCommand(argv: string[], out: Output = console): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    out.log(SEND_USAGE);
    return 0;
  }
  let options: SendOptions;
  try {
    options = await parseSendArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    out.error(`mailfleet send: ${err.message}`);
    out.error(SEND_USAGE);
    return 2;
  }
  return runSend(options, options.password ? redacting(out, options.password) : out);
}

async function parseSendArgs(argv: string[]): Promise<SendOptions> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        server: { type: 'string' },
        starttls: { type: 'boolean', default: false },
        tls: { type: 'boolean', default: false },
        user: { type: 'string' },
        'password-file': { type: 'string' },
        insecure: { type: 'boolean', default: false },
        ca: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string', multiple: true },
        subject: { type: 'string', default: 'mailfleet test message' },
        body: { type: 'string' },
        helo: { type: 'string' },
        timeout: { type: 'string' },
      },
    }));
  } catch (err) {
    // parseArgs names the offending option well; only its error type needs changing.
    throw new UsageError((err as Error).message);
  }
  if (!values.server) throw new UsageError('--server HOST:PORT is required');
  if (!values.from) throw new UsageError('--from is required');
  if (!values.to?.length) throw new UsageError('at least one --to is required');
  if (values.starttls && values.tls) throw new UsageError('use either --starttls or --tls, not both');
  const mode: TlsMode = values.tls ? 'tls' : values.starttls ? 'starttls' : 'plain';
  if (mode === 'plain' && (values.insecure || values.ca)) {
    throw new UsageError('--insecure and --ca only apply to TLS: add --starttls or --tls');
  }
  if (Boolean(values.user) !== Boolean(values['password-file'])) {
    throw new UsageError('--user and --password-file go together (the password is read from a file to keep it out of shell history and ps)');
  }
  const { host, port } = parseServer(values.server);
  return {
    host,
    port,
    mode,
    user: values.user,
    password: values['password-file'] ? await readPassword(values['password-file']) : undefined,
    insecure: values.insecure,
    ca: values.ca ? await readCa(values.ca) : undefined,
    from: values.from,
    to: values.to,
    subject: values.subject,
    body: values.body ?? `This is a test message sent by mailfleet send to ${values.server} at ${new Date().toISOString()}.`,
    helo: values.helo,
    timeoutSeconds: parseTimeout(values.timeout),
  };
}

function parseServer(server: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(server);
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535) {
    throw new UsageError(`--server must be HOST:PORT, e.g. smtp.example.com:587 or [::1]:2525 (got ${JSON.stringify(server)})`);
  }
  return { host: (m[1] ?? m[2])!, port };
}

function parseTimeout(value: string | undefined): number {
  if (value === undefined) return DEFAULT_TIMEOUT_SECONDS;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`--timeout must be a positive number of seconds (got ${JSON.stringify(value)})`);
  return seconds;
}

async function readArgFile(flag: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new UsageError(`cannot read ${flag} ${file}: ${why}`);
  }
}

async function readCa(file: string): Promise<string> {
  const pem = await readArgFile('--ca', file);
  // Node ignores a CA it cannot parse, which would later look like an untrusted server certificate.
  try {
    new X509Certificate(pem);
  } catch {
    throw new UsageError(`--ca ${file} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)`);
  }
  return pem;
}

async function readPassword(file: string): Promise<string> {
  // Only the line ending an editor or `echo` adds is dropped: other whitespace may be part of the password.
  const password = (await readArgFile('--password-file', file)).replace(/\r?\n$/, '');
  if (!password) throw new UsageError(`--password-file ${file} is empty`);
  return password;
}

/**
 * Output that masks the password. The transcript already hides what is sent during AUTH; this
 * also covers a server that echoes a credential line (the base64 password) in a reply.
 */
function redacting(out: Output, password: string): Output {
  const secrets = [password, Buffer.from(password).toString('base64')];
  const mask = (line: string) => secrets.reduce((text, secret) => text.split(secret).join('<password hidden>'), line);
  return { log: (line) => out.log(mask(line)), error: (line) => out.error(mask(line)) };
}

async function runSend(options: SendOptions, out: Output): Promise<number> {
  const session = new SessionLog(out, options);
  const conn = new SMTPConnection(connectionOptions(options, session));
  session.watch(conn);
  // Failures reach the step that is waiting (see step()); without a listener EventEmitter would throw them.
  conn.on('error', () => undefined);
  const message = await composeMessage(options);
  out.log(`* connecting to ${options.host}:${options.port} ${describeMode(options.mode)}`);
  try {
    await step<void>(conn, (done) => conn.connect(done));
    if (options.user) await authenticate(conn, options, session);
    const info = await step<SMTPConnection.SentMessageInfo>(conn, (done) => conn.send({ from: options.from, to: options.to }, message, done));
    await quit(conn);
    return reportSent(info, session, out);
  } catch (err) {
    await quit(conn);
    // Last, so the diagnosis is what the user reads first when the command returns.
    out.error(`error: ${(err as Error).message}`);
    out.error(`diagnosis: ${diagnose(err as SmtpError, session.facts)}`);
    return 1;
  }
}

function connectionOptions(options: SendOptions, session: SessionLog): SMTPConnection.Options {
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

function describeMode(mode: TlsMode): string {
  if (mode === 'tls') return 'with implicit TLS';
  if (mode === 'starttls') return 'in plain text, upgrading with STARTTLS';
  return 'in plain text (no STARTTLS: add --starttls to upgrade)';
}

/**
 * Runs one SMTPConnection call. Some failures (timeouts, TLS and socket errors) arrive only as
 * an 'error' event, not through the call's callback, so both settle the step.
 */
function step<T>(conn: SMTPConnection, start: (done: (err?: SmtpError | null, value?: T) => void) => void): Promise<T> {
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

async function authenticate(conn: SMTPConnection, options: SendOptions, session: SessionLog): Promise<void> {
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

function composeMessage(options: SendOptions): Promise<Buffer> {
  return new MailComposer({
    from: options.from,
    to: options.to,
    subject: options.subject,
    text: options.body,
    headers: { 'X-Mailer': 'mailfleet send' },
  })
    .compile()
    .build();
}

/** Ends the session politely when it is still open; bounded by the socket timeout. */
async function quit(conn: SMTPConnection): Promise<void> {
  if (conn.destroyed) return;
  await new Promise<void>((resolve) => {
    conn.once('end', resolve);
    conn.quit();
  });
}

function reportSent(info: SMTPConnection.SentMessageInfo, session: SessionLog, out: Output): number {
  const firstRejection = info.rejectedErrors?.[0];
  if (!firstRejection) {
    out.log(`sent: accepted for ${info.accepted.join(', ')}: ${info.response}`);
    return 0;
  }
  out.error(`error: accepted for ${info.accepted.join(', ')} but refused for ${info.rejected.join(', ')}: ${firstRejection.message}`);
  out.error(`diagnosis: ${diagnose(firstRejection, session.facts)}`);
  return 1;
}

/**
 * SMTPConnection's logger: prints the transcript as it happens and records what the
 * diagnosis needs (the latest EHLO capabilities, whether TLS is up).
 */
class SessionLog {
  readonly facts: SessionFacts;
  readonly logger: ExternalLogger;
  private conn: SMTPConnection | undefined;
  private awaitingEhloReply = false;
  private inAuthExchange = false;

  constructor(
    private readonly out: Output,
    options: SendOptions,
  ) {
    this.facts = {
      host: options.host,
      port: options.port,
      mode: options.mode,
      timeoutSeconds: options.timeoutSeconds,
      from: options.from,
      user: options.user,
      caGiven: options.ca !== undefined,
      greeted: false,
      capabilities: undefined,
      tlsEstablished: false,
      authenticated: false,
    };
    const levels: LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
    this.logger = Object.fromEntries(
      levels.map((level) => [level, (entry: LogEntry, message: string, ...args: unknown[]) => this.entry(level, entry, format(message, ...args))]),
    );
  }

  watch(conn: SMTPConnection): void {
    this.conn = conn;
  }

  /** A step of our own, printed like SMTPConnection's events. */
  note(text: string): void {
    this.out.log(`* ${text}`);
  }

  private entry(level: LogLevel, entry: LogEntry, text: string): void {
    // Failures are reported once, with their diagnosis, by runSend.
    if (entry.err) return;
    if (entry.tnx === 'client') this.client(text);
    else if (entry.tnx === 'server') this.server(text);
    else if (entry.tnx === 'dns' ? entry.source !== entry.resolved : level !== 'debug' && level !== 'trace') this.note(text);
    this.noteTls();
  }

  private client(text: string): void {
    this.awaitingEhloReply = /^(EHLO|HELO|LHLO)\b/i.test(text);
    const authCommand = /^AUTH\s/i.test(text);
    // SMTPConnection masks the password but still logs the rest of each credential (base64 of
    // user + mask): show only the mechanism, so the transcript never seems to leak a secret.
    const shown = this.inAuthExchange && !authCommand ? '<credentials hidden>' : text.replace(/^(AUTH\s+\S+)\s.*$/i, '$1 <credentials hidden>');
    if (authCommand) this.inAuthExchange = true;
    this.out.log(`C: ${shown}`);
  }

  private server(text: string): void {
    // 334 asks for the next piece of the credentials; any other reply ends the exchange.
    if (!text.startsWith('334')) this.inAuthExchange = false;
    const lines = text.split('\n');
    for (const line of lines) this.out.log(`S: ${line}`);
    this.facts.greeted = true;
    if (!this.awaitingEhloReply) return;
    this.awaitingEhloReply = false;
    // A new EHLO (after STARTTLS) replaces what the server offered before.
    this.facts.capabilities = lines[0]?.startsWith('2') ? lines.slice(1).map((l) => l.slice(4).trim()) : [];
  }

  /**
   * SMTPConnection emits no event when a TLS handshake (implicit or after STARTTLS) finishes,
   * so after each log entry the socket is checked for a finished one, described once.
   */
  private noteTls(): void {
    const socket = this.conn?._socket;
    if (this.facts.tlsEstablished || !(socket instanceof TLSSocket) || !handshakeDone(socket)) return;
    this.facts.tlsEstablished = true;
    const cipher = socket.getCipher();
    this.note(`TLS ${socket.getProtocol() ?? 'unknown version'}, cipher ${cipher.name}`);
    const cert = socket.getPeerCertificate();
    this.note(`certificate subject ${distinguishedName(cert.subject)}, issuer ${distinguishedName(cert.issuer)}, valid until ${cert.valid_to}${cert.subjectaltname ? `, names ${cert.subjectaltname}` : ''}`);
    this.note(socket.authorized ? 'certificate verified' : `certificate NOT verified (--insecure): ${String(socket.authorizationError)}`);
  }
}

/**
 * Whether the handshake completed: Node sets `authorized` or `authorizationError` only then.
 * A certificate that fails verification without --insecure destroys the socket instead.
 */
function handshakeDone(socket: TLSSocket): boolean {
  return !socket.destroyed && (socket.authorized || Boolean(socket.authorizationError));
}

function distinguishedName(name: Certificate | undefined): string {
  const parts = Object.entries(name ?? {}).filter(([, value]) => value !== undefined);
  if (!parts.length) return '(none)';
  return parts
    .map(([key, value]) => `${key}=${Array.isArray(value) ? value.join('+') : value}`)
    .join(', ');
}
