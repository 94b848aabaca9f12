/**
 * The intake's SMTP engine: a listening socket (plain, or TLS from the first byte), its open
 * sessions (connection.ts), and the certificate they offer, which a renewed Secret replaces
 * for new sessions. It replaces smtp-server, whose per-session cost was about half of the
 * relay's main thread on small messages (`npm run bench:engines`); the handlers' signatures
 * are smtp-server's, so intake did not change.
 */
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import type { CountedRefusalName } from '../../refusals.js';
import { SmtpConnection } from './connection.js';
import type { DataStream, HandlerError, Session } from './session.js';
import type { Authentication } from './sasl.js';
import type { Address } from './syntax.js';

type Callback = (err?: HandlerError) => void;

export interface EngineOptions {
  /** The host name in the greeting and the EHLO reply. */
  name: string;
  banner?: string;
  /** TLS from the first byte (port 465). */
  implicitTls: boolean;
  /** STARTTLS offered (and so AUTH only after it, unless allowInsecureAuth). */
  starttls: boolean;
  key?: Buffer;
  cert?: Buffer;
  /** The largest message (SIZE); 0 for no limit. */
  size: number;
  /** A ceiling on open sockets: past it a newcomer gets 421 before the greeting. */
  maxClients: number;
  /** The idle timeout when sessionTimeoutMs is not given. */
  socketTimeout: number;
  sessionTimeoutMs?: (session: Session) => number;
  /** The pause before the greeting in which a client that talks is closed (ms; 100 by default). */
  greetingDelayMs?: number;
  /** AUTH offered. The engine never requires it: who may relay is the listener's decision (trusted networks relay without). */
  authEnabled: boolean;
  authMethods: string[];
  allowInsecureAuth: boolean;
  onConnect(session: Session, cb: Callback): void;
  onAuth(auth: Authentication, session: Session, cb: (err: HandlerError, response?: { user?: unknown }) => void): void;
  onMailFrom(address: Address, session: Session, cb: Callback): void;
  onRcptTo(address: Address, session: Session, cb: Callback): void;
  onData(stream: DataStream, session: Session, cb: (err: HandlerError, message?: string) => void): void;
  onClose(session: Session): void;
  /** A refusal the engine makes on its own (AUTH before STARTTLS), to be counted and logged like the listener's. */
  onBuiltinRefusal?(name: CountedRefusalName, session: Session): void;
}

/** 8 of the 16 base-32 characters of a session id: this process's own (40 random bits). */
const SESSION_PREFIX = BigInt('0x' + crypto.randomBytes(5).toString('hex'))
  .toString(32)
  .padStart(8, '0');
let sessions = 0;
/** The longest a TLS handshake on an implicit-TLS port may take. */
const HANDSHAKE_TIMEOUT_MS = 30_000;

/**
 * The next session id of this process: its prefix and a counter (8 base-32 digits, then
 * wrapping). An id only tells sessions apart in the logs, in the order they came: no
 * randomness per session.
 */
export function nextSessionId(): string {
  sessions = (sessions + 1) % 32 ** 8;
  return SESSION_PREFIX + sessions.toString(32).padStart(8, '0');
}

export class SmtpEngine extends EventEmitter {
  readonly server: net.Server;
  readonly connections = new Set<SmtpConnection>();
  secureContext: tls.SecureContext | undefined;

  constructor(public options: EngineOptions) {
    super();
    if (options.key && options.cert) this.secureContext = tls.createSecureContext({ key: options.key, cert: options.cert, minVersion: 'TLSv1.2' });
    if (options.implicitTls) {
      // A session begins once its handshake is done, so a handshake has a deadline of its own,
      // and sockets still in one count against maxClients (Node closes those beyond it).
      const server = tls.createServer({ key: options.key, cert: options.cert, minVersion: 'TLSv1.2', handshakeTimeout: Math.min(options.socketTimeout || 60_000, HANDSHAKE_TIMEOUT_MS) }, (socket) => this.accept(socket, true));
      server.maxConnections = options.maxClients;
      // A handshake that fails or times out (a scanner, a client that distrusts us) never became
      // a session. With a listener here, closing its socket is ours to do.
      server.on('tlsClientError', (_err, socket) => socket.destroy());
      this.server = server;
    } else {
      this.server = net.createServer((socket) => this.accept(socket, false));
    }
    this.server.on('error', (err) => this.emit('error', err));
  }

  private accept(socket: net.Socket, secure: boolean): void {
    const connection = new SmtpConnection(this, socket, nextSessionId(), secure);
    this.connections.add(connection);
    connection.init();
  }

  /** New limits (a reload): for the sessions that start from now on. */
  applyLimits(limits: Pick<EngineOptions, 'size' | 'maxClients' | 'socketTimeout'>): void {
    Object.assign(this.options, limits);
    if (this.server instanceof tls.Server) this.server.maxConnections = limits.maxClients;
  }

  listen(port: number, host: string, cb: () => void): void {
    this.server.listen(port, host, cb);
  }

  /** A renewed key and certificate, for the sessions that start from now on. */
  updateSecureContext(tlsFiles: { key: Buffer; cert: Buffer }): void {
    this.secureContext = tls.createSecureContext({ key: tlsFiles.key, cert: tlsFiles.cert, minVersion: 'TLSv1.2' });
    if (this.server instanceof tls.Server) this.server.setSecureContext({ key: tlsFiles.key, cert: tlsFiles.cert, minVersion: 'TLSv1.2' });
  }
}
