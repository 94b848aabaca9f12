/**
 * smtp-server waits a fixed 100 ms before every greeting to catch clients that talk too
 * early. That is right for port 25 facing the internet and wrong for submission from our own
 * applications: it caps a client that opens a connection per message at 10 messages a second
 * per session. This makes the pause a per-server option (`greetingDelayMs`), same behaviour
 * otherwise. A test pins the library code this replaces, so an upgrade that changes it fails.
 *
 * smtp-server also prefixes every reply with an enhanced status code guessed from the basic
 * code (550 becomes 5.1.1, whatever the reason). Our refusals carry their own (5.7.1 relay
 * denied, 4.3.1 storage): a reply text that starts with one is sent as it is.
 *
 * And it advertises AUTH before STARTTLS even where AUTH would then be refused (538). Like
 * Postfix with smtpd_tls_auth_only, we offer AUTH only once it can succeed.
 *
 * Its AUTH before STARTTLS gets its own words (538 Error: Must issue a STARTTLS command first),
 * which nobody counted: it is answered with ours (tlsRequired) and told to intake
 * (`onBuiltinRefusal`), which counts and logs it like its own refusals.
 *
 * Its STARTTLS works where it is hidden (hideSTARTTLS), with a certificate of its own making
 * when we gave none: a port without TLS refuses it (502 5.5.1), as one that never had it.
 *
 * Its idle timeout is one number for every session. A `sessionTimeoutMs(session)` option
 * makes it per session and current (intake: short until the first AUTH or MAIL, shorter under
 * stress); it is asked again at every command, and a command that comes after the time is
 * up ends the session as the timeout would, so a session that keeps talking without logging
 * in still meets its deadline.
 *
 * It names each session with 80 random bits from OpenSSL, a getpid(2) and a BigInt: about 2% of
 * the main thread's time under the bench (a new connection per message). A session id only
 * has to tell sessions apart in the logs, so it is a random prefix made once per process and
 * a counter, in the same 16 characters (and in the order the sessions came).
 *
 * After QUIT it half-closes and reads on until the client closes its side. A client that
 * closes with an RST (smtp-source does) then costs an ECONNRESET error with its stack, and
 * every client an event more. Like Postfix, a plain session is closed outright once its 221
 * is with the kernel (a TLS one still ends with close_notify).
 */
import crypto from 'node:crypto';
import type { Socket } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { refusalReply } from '../refusals.js';

interface PatchedConnection {
  _server: {
    options: { maxClients?: number; greetingDelayMs?: number; allowInsecureAuth?: boolean; hideSTARTTLS?: boolean; socketTimeout?: number; sessionTimeoutMs?: (session: unknown) => number; onBuiltinRefusal?: (name: 'tlsRequired', session: unknown) => void };
    connections: Set<unknown>;
  };
  secure: boolean;
  name: string;
  session: unknown;
  _socket: { setTimeout(ms: number): void; once(event: 'timeout', listener: () => void): void; removeListener(event: 'timeout', listener: () => void): void; destroyed: boolean; writableLength: number; destroy(): void };
  _armedTimeoutMs?: number;
  /** The one 'timeout' listener of this session (re-arming replaces it), and the socket it is on. */
  _timeoutListener?: () => void;
  _timeoutSocket?: PatchedConnection['_socket'];
  /** smtp-server's own: STARTTLS is under way (the TLS socket is not this._socket yet). */
  _upgrading?: boolean;
  _closing?: boolean;
  close(): void;
  _onTimeout(): void;
  _armTimeout(socket?: PatchedConnection['_socket']): void;
  _onCommand(command: Buffer, callback: () => void): void;
  _setListeners(cb: () => void): void;
  send(code: number, text: unknown, context?: unknown): void;
  connectionReady(): void;
}

interface PatchedServer {
  options: { ignoredHosts?: string[] };
  _expectsProxyHeader(socket: Socket): boolean;
  _handleProxy(socket: Socket, callback: (err: Error | null, socketOptions?: { id: string; ignore?: boolean }) => void): void;
}

const ORIGINAL_INIT = SMTPConnection.prototype.init.toString();
const serverProto = SMTPServer.prototype as unknown as PatchedServer;
const ORIGINAL_HANDLE_PROXY = serverProto._handleProxy.toString();
/** 8 of the 16 base-32 characters of a session id: this process's own (40 random bits). */
const SESSION_PREFIX = BigInt('0x' + crypto.randomBytes(5).toString('hex'))
  .toString(32)
  .padStart(8, '0');
let sessions = 0;

/** The next session id of this process: its prefix and a counter (8 base-32 digits, then wrapping). */
export function nextSessionId(): string {
  sessions = (sessions + 1) % 32 ** 8;
  return SESSION_PREFIX + sessions.toString(32).padStart(8, '0');
}

const proto0 = SMTPConnection.prototype as unknown as Record<string, { toString(): string }>;
const ORIGINAL_ARM_TIMEOUT = proto0._armTimeout!.toString();
const ORIGINAL_STARTTLS = proto0.handler_STARTTLS!.toString();
const ORIGINAL_QUIT = proto0.handler_QUIT!.toString();
/** smtp-server's default idle timeout (its SOCKET_TIMEOUT), used when no socketTimeout is set. */
const DEFAULT_SOCKET_TIMEOUT_MS = 60_000;
let patched = false;
const OWN_ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

export function patchGreetingDelay(): void {
  if (patched) return;
  patched = true;
  const proto = SMTPConnection.prototype as unknown as PatchedConnection & { init(): void };
  const originalSend = proto.send;
  proto.send = function (this: PatchedConnection, code: number, text: unknown, context?: unknown) {
    if (typeof text === 'string' && OWN_ENHANCED_CODE.test(text)) return originalSend.call(this, code, text, false);
    if (code === 538) {
      this._server.options.onBuiltinRefusal?.('tlsRequired', this.session);
      return originalSend.call(this, ...refusalReply('tlsRequired'), false);
    }
    if (code === 250 && Array.isArray(text) && !this.secure && !this._server.options.allowInsecureAuth) {
      return originalSend.call(this, code, text.filter((line: unknown) => typeof line !== 'string' || !line.startsWith('AUTH ')), context);
    }
    return originalSend.call(this, code, text, context);
  };
  proto._armTimeout = function (this: PatchedConnection, socket = this._socket) {
    const { sessionTimeoutMs, socketTimeout } = this._server.options;
    const ms = sessionTimeoutMs ? sessionTimeoutMs(this.session) : socketTimeout || DEFAULT_SOCKET_TIMEOUT_MS;
    this._armedTimeoutMs = ms;
    // One listener, replaced: socket.setTimeout(ms, cb) adds one per call, and this runs at
    // every command until the session starts (a session sending NOOPs piled them up, and all
    // of them fired at the deadline). Replaced on the socket it was put on: after STARTTLS
    // that is no longer this one, and the plain socket under the TLS one must go quiet (its
    // timer, never re-armed once TLS owns its handle, closed logged-in sessions at the old
    // start deadline).
    const previous = this._timeoutSocket;
    if (previous && this._timeoutListener) previous.removeListener('timeout', this._timeoutListener);
    if (previous && previous !== socket) previous.setTimeout(0);
    this._timeoutListener = () => this._onTimeout();
    this._timeoutSocket = socket;
    socket.once('timeout', this._timeoutListener);
    // At least a second: a deadline that passed while a handler runs is re-armed, not spun on.
    socket.setTimeout(Math.max(ms, 1000));
  };
  const originalOnCommand = proto._onCommand;
  proto._onCommand = function (this: PatchedConnection, command: Buffer, callback: () => void) {
    const { sessionTimeoutMs } = this._server.options;
    const ms = sessionTimeoutMs?.(this.session);
    if (ms !== undefined && ms <= 0) return this._onTimeout();
    if (ms === undefined) return originalOnCommand.call(this, command, callback);
    if (ms !== this._armedTimeoutMs) this._armTimeout();
    // And after it: a command that logged in or began a mail lifts the short deadline at once.
    return originalOnCommand.call(this, command, () => {
      // (Not while STARTTLS upgrades: the upgrade arms the TLS socket itself.)
      if (!this._closing && !this._upgrading && sessionTimeoutMs!(this.session) !== this._armedTimeoutMs) this._armTimeout();
      callback?.();
    });
  };
  const handlers = proto as unknown as { handler_STARTTLS(this: PatchedConnection, command: Buffer, callback: () => void): void; handler_QUIT(this: PatchedConnection, command: Buffer, callback: () => void): void };
  handlers.handler_QUIT = function (this: PatchedConnection, _command: Buffer, callback: () => void) {
    this.send(221, 'Bye');
    // Nothing left to write (the reply went out at once): closed, as Postfix does. Else its own half-close.
    if (!this.secure && !this._upgrading && !this._socket.destroyed && this._socket.writableLength === 0) this._socket.destroy();
    this.close();
    callback();
  };
  const originalStarttls = handlers.handler_STARTTLS;
  handlers.handler_STARTTLS = function (this: PatchedConnection, command: Buffer, callback: () => void) {
    if (this._server.options.hideSTARTTLS && !this.secure) {
      this.send(...refusalReply('starttlsNotOffered'), false);
      return callback();
    }
    return originalStarttls.call(this, command, callback);
  };
  const originalHandleProxy = serverProto._handleProxy;
  serverProto._handleProxy = function (this: PatchedServer, socket, callback) {
    // A PROXY header to read first: the library's own way (one in a connection's life).
    if (this._expectsProxyHeader(socket)) return originalHandleProxy.call(this, socket, callback);
    const ignore = this.options.ignoredHosts?.includes(socket.remoteAddress ?? '');
    setImmediate(() => callback(null, { id: nextSessionId(), ignore }));
  };
  proto.init = function (this: PatchedConnection) {
    this._setListeners(() => {
      const { maxClients, greetingDelayMs } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        const [code, line] = refusalReply('tooManySockets');
        return this.send(code, `${this.name} ${line}`, false);
      }
      const delay = greetingDelayMs ?? 100;
      if (delay <= 0) return this.connectionReady();
      setTimeout(() => this.connectionReady(), delay).unref();
    });
  };
}

/** The library source this patch replaces, for the pinning test. */
export function originalInitSource(): string {
  return ORIGINAL_INIT;
}

/** The other library methods the patch replaces or wraps, for the pinning test. */
export function originalSources(): { armTimeout: string; starttls: string; handleProxy: string; quit: string } {
  return { armTimeout: ORIGINAL_ARM_TIMEOUT, starttls: ORIGINAL_STARTTLS, handleProxy: ORIGINAL_HANDLE_PROXY, quit: ORIGINAL_QUIT };
}
