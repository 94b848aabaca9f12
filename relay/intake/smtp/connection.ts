/**
 * One SMTP session of the intake engine: the socket, the commands in order, the replies, the
 * message body, STARTTLS and the idle deadline. What each command means for the relay (who may relay,
 * what is stored) is decided by the listener's handlers (onConnect, onAuth, onMailFrom,
 * onRcptTo, onData); this module only speaks the protocol, and speaks it as smtp-server 3.21
 * did, whose hardening it keeps:
 * - a client that talks before the greeting is closed (421), as is one that sends ten
 *   unknown commands or an HTTP request;
 * - commands are read one at a time and the next only once the reply to the last has left
 *   (a client that pipelines without reading cannot make us buffer replies);
 * - what a client sent behind STARTTLS in plaintext is dropped, never read inside TLS;
 * - nothing is read after QUIT, and a plain session is closed once its 221 is with the kernel;
 * - a deadline per session (`sessionTimeoutMs`), asked again at every command;
 * - AUTH is offered only where it can succeed (after STARTTLS, unless allowInsecureAuth).
 * What each command does is commands.ts's. Over 400 lines: the session's states (greeting,
 * commands, AUTH exchange, body, TLS upgrade, closing) act on the same socket and fields, and
 * split apart they would share them all.
 */
import { Readable } from 'node:stream';
import tls from 'node:tls';
import type { Socket } from 'node:net';
import { refusalReply } from '../../refusals.js';
import { LineTooLong, SmtpReader } from './reader.js';
import { COMMANDS, type CommandContext } from './commands.js';
import type { AuthStep } from './sasl.js';
import type { EngineOptions, SmtpEngine } from './server.js';
import { newSession, secureSession, transmissionType, type DataStream, type HandlerError, type Session } from './session.js';
import { formatReply, isHttpRequest, verbOf } from './syntax.js';

const QUIET_SOCKET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);
/** Commands handled in one turn of the event loop before others get theirs. */
const MAX_SYNC_COMMANDS = 100;
const HALF_CLOSE_TIMEOUT_MS = 5000;
const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_LINE_LENGTH = 16 * 1024;
const MAX_UNRECOGNIZED = 10;
/** Unread commands kept before the socket stops being read (the kernel then holds the client back). */
const MAX_BACKLOG = 64 * 1024;

export class SmtpConnection implements CommandContext {
  readonly session: Session;
  /** Intake's own marks (crowding.ts): closed to make room. */
  _evicted?: boolean;
  /** A handler (the listener's) has not answered yet. */
  _handlerPending = false;
  /** The body of the message under way, from DATA until its reply. */
  _dataStream: DataStream | false = false;
  _closing = false;
  private closed = false;
  private ready = false;
  private upgrading = false;
  private socket: Socket;
  private readonly reader = new SmtpReader(MAX_LINE_LENGTH);
  private unrecognized = 0;
  private transactions = 0;
  /** The next line belongs to an AUTH exchange, not a command. */
  private authStep: AuthStep | undefined;
  /** DATA: the body's end was read / onData answered (with what) / the rest of the body is thrown away. */
  private bodyEnded = false;
  private dataAnswer: { err: HandlerError; message?: unknown } | undefined;
  private discardBody = false;
  private bodyBytes = 0;
  private processing = false;
  /** Why the socket is not being read: replies the client has not taken, or a body the handler has not. */
  private waitingDrain = false;
  private bodyFull = false;
  private closeTimer: NodeJS.Timeout | undefined;
  private armedTimeoutMs: number | undefined;
  private readonly onTimeoutEvent = () => this.onTimeout();
  private readonly onDataEvent = (chunk: Buffer) => this.onData(chunk);
  /** Recipients of the transaction by lower-cased address, at their place in the envelope. */
  rcptIndex = new Map<string, number>();

  constructor(
    private readonly engine: SmtpEngine,
    socket: Socket,
    id: string,
    secure: boolean,
  ) {
    this.socket = socket;
    socket.setNoDelay(true);
    this.session = newSession(socket, id, secure);
  }

  get options(): EngineOptions {
    return this.engine.options;
  }

  get name(): string {
    return this.options.name;
  }

  /** Listens, checks the socket ceiling, and greets after the early-talker pause. */
  init(): void {
    this.listenOn(this.socket);
    const { maxClients, greetingDelayMs } = this.options;
    if (maxClients && this.engine.connections.size > maxClients) {
      const [code, line] = refusalReply('tooManySockets');
      return this.send(code, `${this.name} ${line}`, false);
    }
    const delay = greetingDelayMs ?? 100;
    if (delay <= 0) return this.connectionReady();
    setTimeout(() => this.connectionReady(), delay).unref();
  }

  private listenOn(socket: Socket): void {
    socket.on('data', this.onDataEvent);
    socket.on('close', () => this.onClose());
    socket.on('error', (err) => this.onError(err));
    this.armTimeout();
  }

  private connectionReady(): void {
    if (this._closing || this.closed) return;
    this.resetTransaction();
    this.options.onConnect(this.session, (err) => {
      if (this._closing || this.closed) return;
      if (err) {
        this.send(err.responseCode || 554, err.message, false);
        return this.close();
      }
      this.ready = true;
      this.send(220, `${this.name} ESMTP${this.options.banner ? ` ${this.options.banner}` : ''}`, false);
      this.process();
    });
  }

  /** Writes one reply; a 421 also closes. Nothing is written while a TLS handshake owns the socket. */
  send(code: number, text: string | string[], enhanced?: string | false): void {
    const socket = this.socket;
    if (!this.upgrading && !socket.destroyed && socket.writable) socket.write(formatReply(code, text, enhanced));
    if (code === 421) this.close();
  }

  /** Ends the session: no command is read any more; the socket goes at the latest after a few seconds. */
  close(): void {
    if (this.closed) return;
    const socket = this.socket;
    if (!socket.destroyed && socket.writable) socket.end();
    this.engine.connections.delete(this);
    if (this._closing) return;
    this._closing = true;
    this.reader.discard();
    // Read on (and throw away) so the client's FIN is seen; the deadline is not extended by what it sends.
    if (!this.upgrading && !socket.destroyed) socket.resume();
    this.closeTimer = setTimeout(() => socket.destroy(), Math.min(this.options.socketTimeout || DEFAULT_TIMEOUT_MS, HALF_CLOSE_TIMEOUT_MS));
    this.closeTimer.unref();
  }

  /**
   * Arms the idle deadline on the current socket: the session's own (`sessionTimeoutMs`,
   * at least a second so a deadline that passed while a handler ran is re-armed, not spun on).
   */
  _armTimeout(): void {
    const { sessionTimeoutMs, socketTimeout } = this.options;
    const ms = sessionTimeoutMs ? sessionTimeoutMs(this.session) : socketTimeout || DEFAULT_TIMEOUT_MS;
    this.armedTimeoutMs = ms;
    this.socket.setTimeout(Math.max(ms, 1000));
  }

  private armTimeout(): void {
    this.socket.removeListener('timeout', this.onTimeoutEvent);
    this.socket.on('timeout', this.onTimeoutEvent);
    this._armTimeout();
  }

  private onTimeout(): void {
    if (this._closing) return void this.socket.destroy();
    // The client waits for us (a handler, or the verdict on a received body): not idle.
    if (this._handlerPending || (this._dataStream && !this.reader.readingData)) return this._armTimeout();
    this.send(421, 'Timeout - closing connection');
  }

  private onData(chunk: Buffer): void {
    if (this._closing || this.upgrading) return;
    // A line trickled a byte at a time never completes a command: the deadline is also asked here.
    if (!this._handlerPending && !this._dataStream && this.pastDeadline()) return this.onTimeout();
    this.reader.push(chunk);
    this.process();
    // A handler is still at work, or the client sends faster than we answer: let the kernel hold it back.
    if (!this.reader.readingData && this.reader.buffered > MAX_BACKLOG) this.socket.pause();
  }

  /** Reads the socket again once nothing holds it back. */
  private resumeReading(): void {
    if (this._closing || this.waitingDrain || this.bodyFull || this.reader.buffered > MAX_BACKLOG) return;
    if (this.socket.isPaused()) this.socket.resume();
  }

  /** Handles what was read, command by command, until a handler or the socket makes it wait. */
  private process(): void {
    if (this.processing) return;
    this.processing = true;
    try {
      for (let n = 0; n < MAX_SYNC_COMMANDS; n++) {
        if (this._closing || this.closed || this.upgrading || this._handlerPending) return;
        if (this._dataStream) {
          if (!this.reader.readingData) return; // the body ended: waiting for onData's verdict
          if (!this.feedBody()) return;
          continue;
        }
        if (this.waitingDrain) return;
        if (this.socket.writableNeedDrain) {
          // Replies the client has not read yet: neither commands nor the socket are read until they left.
          this.waitingDrain = true;
          this.socket.pause();
          this.socket.once('drain', () => {
            this.waitingDrain = false;
            this.resumeReading();
            this.process();
          });
          return;
        }
        let line: string | undefined;
        try {
          line = this.reader.nextLine();
        } catch (err) {
          if (!(err instanceof LineTooLong)) throw err;
          this.send(421, `Error: ${err.message}`);
          return;
        }
        if (line === undefined) return this.resumeReading();
        this.onCommand(line);
      }
      setImmediate(() => this.process());
    } finally {
      this.processing = false;
    }
  }

  /** Hands the body read so far to onData's stream; false when there is nothing more to do now. */
  private feedBody(): boolean {
    const stream = this._dataStream as DataStream;
    const { chunk, end } = this.reader.nextBody();
    let flowing = true;
    if (chunk) {
      this.bodyBytes += chunk.length;
      stream.byteLength = this.bodyBytes;
      const max = this.options.size;
      if (max && this.bodyBytes > max) stream.sizeExceeded = true;
      // Past the limit the rest is only counted (the reply is 552 anyway), never kept.
      if (!this.discardBody && !stream.sizeExceeded && !stream.destroyed) flowing = stream.push(chunk);
    }
    if (end) {
      this.bodyEnded = true;
      if (!stream.destroyed) stream.push(null);
      if (this.dataAnswer && this._dataStream === stream) this.answerData();
      // Answered (now, or from inside push() by a handler that answers on 'end'): on to the commands pipelined behind the body.
      return this._dataStream !== stream;
    }
    // The handler reads slower than the client sends: stop reading the socket until it asks.
    if (!flowing) {
      this.bodyFull = true;
      this.socket.pause();
    } else this.resumeReading(); // (a socket paused for a command backlog that turned out to be a body)
    return false;
  }

  private onCommand(line: string): void {
    if (!this.ready) return this.send(421, `${this.name} You talk too soon`);
    if (this.pastDeadline()) return this.onTimeout();
    if (isHttpRequest(line)) return this.send(421, 'HTTP requests not allowed');
    if (this.authStep) {
      const step = this.authStep;
      this.authStep = undefined;
      return this.run((done) => step(line, done));
    }
    const verb = verbOf(line);
    const handler = verb === 'AUTH' && !this.options.authEnabled ? undefined : COMMANDS.get(verb);
    if (!handler) {
      if (++this.unrecognized >= MAX_UNRECOGNIZED) return this.send(421, 'Error: too many unrecognized commands');
      return this.send(500, 'Error: command not recognized');
    }
    if (verb === 'HELO' || verb === 'EHLO') this.session.openingCommand = verb;
    if (!this.session.hostNameAppearsAs && (verb === 'MAIL' || verb === 'RCPT' || verb === 'DATA' || verb === 'AUTH')) return this.send(503, 'Error: send HELO/EHLO first');
    this.run((done) => handler(this, line, done));
  }

  /** Whether the session's deadline passed (re-arming it when it moved): asked at every command and every read. */
  private pastDeadline(): boolean {
    const ms = this.options.sessionTimeoutMs?.(this.session);
    if (ms === undefined) return false;
    if (ms <= 0) return true;
    if (ms !== this.armedTimeoutMs) this._armTimeout();
    return false;
  }

  /** Runs a command's handler; the next command is read once it is done (and a new deadline armed if it changed). */
  private run(handler: (done: () => void) => void): void {
    this._handlerPending = true;
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      this._handlerPending = false;
      const ms = this.options.sessionTimeoutMs?.(this.session);
      if (!this._closing && !this.upgrading && ms !== undefined && ms !== this.armedTimeoutMs) this._armTimeout();
      // Not from inside process(): a handler that answers at once returns to its loop.
      if (!this.processing) this.process();
    };
    try {
      handler(done);
    } catch (err) {
      this.engine.emit('error', err);
      if (!finished) {
        this.send(451, 'Error: internal server error');
        done();
      }
    }
  }

  /** A new transaction (HELO, EHLO, RSET, after DATA and STARTTLS): the envelope starts empty. */
  resetTransaction(): void {
    const s = this.session;
    s.transmissionType = transmissionType(s);
    s.envelope = { mailFrom: false, rcptTo: [], bodyType: '7bit', smtpUtf8: false };
    s.transaction = this.transactions + 1;
    this.rcptIndex = new Map();
  }

  /** DATA: the body that follows goes to a new stream (commands.ts hands it to onData). */
  beginBody(): DataStream {
    const stream = new Readable({ read: () => this.resumeBody() }) as DataStream;
    stream.byteLength = 0;
    stream.sizeExceeded = false;
    this._dataStream = stream;
    this.bodyFull = false;
    this.bodyBytes = 0;
    this.bodyEnded = false;
    this.dataAnswer = undefined;
    this.discardBody = false;
    this.reader.startData();
    return stream;
  }

  /** onData's verdict on `stream`, sent once the body ended (the rest of one refused early is thrown away). Only the first counts. */
  bodyAnswered(stream: DataStream, err: HandlerError, message?: string): void {
    if (stream !== this._dataStream || this.dataAnswer) return;
    this.dataAnswer = { err, message };
    if (this.bodyEnded) return this.answerData();
    this.discardBody = true;
    this.resumeBody();
  }

  private resumeBody(): void {
    this.bodyFull = false;
    this.resumeReading();
  }

  /** The body ended and onData answered: the reply, then the next transaction. */
  private answerData(): void {
    const { err, message } = this.dataAnswer!;
    this._dataStream = false;
    this.dataAnswer = undefined;
    if (err) this.send(err.responseCode || 450, err.message);
    else this.send(250, typeof message === 'string' ? message : 'OK: message queued', '2.6.0');
    this.transactions++;
    this.unrecognized = 0;
    this.resetTransaction();
    this.resumeBody();
    this.process();
  }

  /** QUIT: a plain session with nothing left to write is closed outright, as Postfix does. */
  quit(): void {
    if (!this.session.secure && !this.socket.destroyed && this.socket.writableLength === 0) this.socket.destroy();
    this.close();
  }

  /** Whether STARTTLS can be taken here (a certificate, and not a plain-only port). */
  get canStartTls(): boolean {
    return this.options.starttls && !!this.engine.secureContext;
  }

  /** The next line the client sends is an AUTH exchange's, not a command. */
  expectAuthLine(step: AuthStep): void {
    this.authStep = step;
  }

  reportError(err: unknown): void {
    this.engine.emit('error', err);
  }

  loggedIn(user: unknown): void {
    this.session.user = user;
    this.session.transmissionType = transmissionType(this.session);
  }

  /** Hands the socket to TLS; what the client sent behind STARTTLS in plaintext is dropped. */
  startTls(): void {
    const raw = this.socket;
    let secure: tls.TLSSocket;
    try {
      secure = new tls.TLSSocket(raw, { isServer: true, secureContext: this.engine.secureContext, server: this.engine.server });
    } catch (err) {
      this.engine.emit('error', err);
      return this.close();
    }
    this.upgrading = true;
    this.reader.discard();
    raw.removeAllListeners('data');
    raw.removeAllListeners('timeout');
    raw.removeAllListeners('close');
    raw.setTimeout(0);
    const fail = (err: Error) => {
      if (!secure.destroyed) secure.destroy();
      if (!raw.destroyed) raw.destroy();
      this.onError(err);
    };
    secure.once('error', fail);
    secure.once('close', () => this.onClose());
    this.socket = secure;
    this.armTimeout();
    secure.once('secure', () => {
      secure.removeListener('error', fail);
      secure.on('error', (err) => this.onError(err));
      secure.on('data', this.onDataEvent);
      this.upgrading = false;
      secureSession(this.session, secure);
      this.resetTransaction();
      this.process();
    });
  }

  private onClose(): void {
    clearTimeout(this.closeTimer);
    const stream = this._dataStream;
    if (stream && !stream.readableEnded && !stream.destroyed && !this.bodyEnded) {
      // The client left mid-message: the handler's stream fails (it removes what it stored).
      const err = Object.assign(new Error('Connection closed before the message was received in full'), { code: 'ECONNECTION' });
      stream.destroy(stream.listenerCount('error') ? err : undefined);
    }
    this._dataStream = false;
    this.engine.connections.delete(this);
    if (this.closed) return;
    this.closed = true;
    this._closing = false;
    setImmediate(() => this.options.onClose(this.session));
  }

  private onError(err: Error & { code?: string }): void {
    if (err.code && QUIET_SOCKET_ERRORS.has(err.code) && !this.session.envelope.mailFrom) return this.close();
    this.engine.emit('error', err);
    this.close();
  }
}
