/**
 * `mailfleet send`'s transcript: SMTPConnection's logger, printing the session as it happens
 * (credentials hidden, the TLS handshake and certificate described once) and keeping the
 * facts the diagnosis needs (the latest EHLO capabilities, whether TLS is up).
 */
import { TLSSocket, type Certificate } from 'node:tls';
import { format } from 'node:util';
import type { ExternalLogger, LogEntry, LogLevel } from 'nodemailer/lib/shared/index.js';
import type SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { Output } from '../output.js';
import type { SendOptions } from './args.js';
import type { SessionFacts } from './diagnose.js';

/**
 * SMTPConnection's logger: prints the transcript as it happens and records what the
 * diagnosis needs (the latest EHLO capabilities, whether TLS is up).
 */
export class SessionLog {
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
      oauth2: options.oauth2 !== undefined,
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
