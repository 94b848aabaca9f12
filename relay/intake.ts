/**
 * Intake: the SMTP listeners (smtp-server). Decides who may relay (AUTH or a trusted
 * network, never an open relay), which senders an authenticated user may use, enforces the
 * limits, completes the header, and answers 250 only once the spool holds the message.
 */
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerSession } from 'smtp-server';
import { parseMailbox } from './address.js';
import type { ListenerConfig, RelayConfig } from './config.js';
import { addedHeaders, headerEnd, headerFacts, originatorAddresses, type HeaderFacts } from './headers.js';
import type { AuthFailureReason, IntakeMetrics } from './metrics.js';
import { refusal, refusalReply, REFUSALS, SmtpRefusal } from './refusals.js';
import { patchGreetingDelay } from './smtp-server-patch.js';
import type { Envelope, RecipientState, Spool, SpoolEntry, SpoolWriter } from './spool.js';
import { describeSuppression, type Suppression, type SuppressionList } from './suppression.js';
import { AuthThrottle, HashGate, type UserStore } from './users.js';

patchGreetingDelay();

/** What intake reads on every session: replaced whole on a config reload. */
export interface IntakePolicy {
  config: RelayConfig;
  users: UserStore;
  tls?: { key: Buffer; cert: Buffer };
}

export interface IntakeDeps {
  spool: Spool;
  metrics: IntakeMetrics;
  log: Logger;
  policy: () => IntakePolicy;
  /** Hands a durable message to the queue. */
  accepted: (entry: SpoolEntry) => void;
  /** Whether new mail may be accepted now (false while draining). */
  accepting: () => boolean;
  /** Recipients that hard-bounced, per sender domain: refused, or accepted and bounced at once (suppression.action). */
  suppressions: SuppressionList;
}

/** A recipient accepted with suppression.action `bounce`: stored as failed, so the queue bounces it without an attempt. */
type RcptAddress = SMTPServerAddress & { suppressed?: Suppression };

function recipientState(r: RcptAddress): RecipientState {
  if (!r.suppressed) return { address: r.address, status: 'pending' };
  return { address: r.address, status: 'failed', statusCode: '5.1.1', lastReply: `${describeSuppression(r.suppressed)}; not attempted` };
}

/** Strips an IPv4-mapped IPv6 prefix so 127.0.0.1 matches 127.0.0.0/8. */
function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

function trustedList(cidrs: string[]): net.BlockList {
  const list = new net.BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/');
    const type = net.isIPv6(addr!) ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr!, type);
    else list.addSubnet(addr!, Number(bits), type);
  }
  return list;
}

/** The BODY parameter of MAIL FROM (RFC 6152), upper-cased; '' when absent. */
function bodyType(session: SMTPServerSession): string {
  const from = session.envelope.mailFrom;
  const args = from ? (from as { args?: Record<string, unknown> }).args : undefined;
  return String(args?.BODY ?? '').toUpperCase();
}

/**
 * A sender domain the user may use: a configured domain or a subdomain of one, allowed for the
 * user. An address that does not parse as one mailbox is no sender at all (see parseMailbox).
 */
export function senderAllowed(config: RelayConfig, user: string, address: string): boolean {
  if (!config.senderDomains.length) return true;
  const domain = parseMailbox(address)?.domain;
  if (!domain) return false;
  return config.senderDomains.some((d) => (domain === d.domain || domain.endsWith(`.${d.domain}`)) && (!d.users || d.users.includes(user)));
}

/** Why an address was refused as a sender, for the reply. */
function senderProblem(user: string, address: string): string {
  const domain = address ? parseMailbox(address)?.domain : '<>';
  return domain ? `user ${user} may not send from ${domain}` : 'not a single valid mailbox (one @, outside quotes)';
}

/**
 * How long a session may stay idle now: until the start deadline while it has neither logged
 * in nor begun a mail (0 or less once it has passed), and shorter while the listener is under
 * stress.
 */
export function sessionTimeoutMs(limits: RelayConfig['limits'], s: { startedAt: number; started: boolean }, stressed: boolean, now: number): number {
  const idle = (stressed ? Math.min(limits.stressIdleTimeout, limits.idleTimeout) : limits.idleTimeout) * 1000;
  if (s.started) return idle;
  return Math.min(idle, s.startedAt + limits.startTimeout * 1000 - now);
}

/**
 * Which session to close so a newcomer fits in a full listener (pure): the one connected
 * longest that has neither logged in nor begun a mail and is not mid-command. Idle sessions
 * that never start are how slowloris fills a listener; an application's session starts at
 * once. Undefined when every session has started: the newcomer is refused instead.
 */
export function evictionCandidate<T>(sessions: Iterable<{ key: T; started: boolean; busy: boolean; connectedAt: number }>): T | undefined {
  let oldest: { key: T; connectedAt: number } | undefined;
  for (const s of sessions) if (!s.started && !s.busy && (!oldest || s.connectedAt < oldest.connectedAt)) oldest = s;
  return oldest?.key;
}

/** Connections smtp-server lets through to onConnect beyond maxConnections, so one can be made room for. */
const CONNECT_HEADROOM = 64;

/** Stress (Postfix's term): a listener's sessions above this share of maxConnections. */
const STRESS_SHARE = 0.8;

/** AUTH state shared by all listeners: failures per address and user, and the bound on hashing. */
export class AuthGuard {
  readonly throttle: AuthThrottle;
  readonly gate: HashGate;
  constructor(limits: () => RelayConfig['limits']) {
    this.throttle = new AuthThrottle(() => {
      const l = limits();
      return { perClient: l.authFailuresPerClient, perUser: l.authFailuresPerUser, windowMs: l.authFailureWindow * 1000 };
    });
    this.gate = new HashGate(() => ({ concurrency: limits().authConcurrency, queue: limits().authQueue }));
  }
}

/** Per-user sliding one-minute window of accepted messages. */
class RateWindow {
  private readonly hits = new Map<string, number[]>();
  allow(key: string, limit: number, now: number): boolean {
    const recent = (this.hits.get(key) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= limit) {
      this.hits.set(key, recent);
      return false;
    }
    recent.push(now);
    this.hits.set(key, recent);
    return true;
  }
}

export class SmtpListener {
  readonly server: SMTPServer;
  private readonly trusted: net.BlockList;
  private readonly trustedAddresses = new Map<string, boolean>();
  private readonly perClient = new Map<string, number>();
  private readonly rate: RateWindow;
  private stressed = false;
  private stressSweptAt = 0;

  constructor(
    readonly config: ListenerConfig,
    private readonly deps: IntakeDeps,
    rate: RateWindow,
    private readonly auth: AuthGuard,
  ) {
    this.trusted = trustedList(config.trustedNetworks);
    this.rate = rate;
    const policy = deps.policy();
    const limits = policy.config.limits;
    const authOffered = config.auth !== 'none';
    this.server = new SMTPServer({
      name: policy.config.hostname,
      banner: 'mailfleet',
      hideENHANCEDSTATUSCODES: false,
      // DSN parameters (RFC 3461) are not implemented: do not advertise them.
      hideDSN: true,
      hideREQUIRETLS: true,
      secure: config.tls === 'implicit',
      // Hidden is also refused (502, smtp-server-patch.ts): a port without TLS has no certificate to offer.
      hideSTARTTLS: config.tls === 'none',
      key: policy.tls?.key,
      cert: policy.tls?.cert,
      minVersion: 'TLSv1.2',
      size: limits.maxMessageSize,
      // A ceiling on sockets only: onConnect enforces maxConnections itself, closing an idle
      // session to make room (makeRoom), which needs the newcomer to get that far.
      maxClients: limits.maxConnections + CONNECT_HEADROOM,
      maxRecipients: limits.maxRecipients,
      socketTimeout: limits.idleTimeout * 1000,
      sessionTimeoutMs: (session: SMTPServerSession) => this.timeoutFor(session),
      authMethods: ['PLAIN', 'LOGIN'],
      // We decide ourselves, so trusted networks can relay on an AUTH-required port.
      authOptional: true,
      allowInsecureAuth: config.allowInsecureAuth,
      disabledCommands: authOffered ? [] : ['AUTH'],
      disableReverseLookup: true,
      logger: false,
      greetingDelayMs: config.greetingDelay * 1000,
      onConnect: (session, cb) => this.onConnect(session, cb),
      onClose: (session) => this.onClose(session),
      onAuth: (auth, session, cb) => this.onAuth(auth, session, cb),
      onMailFrom: (address, session, cb) => this.onMailFrom(address, session, cb),
      onRcptTo: (address, session, cb) => this.onRcptTo(address, session, cb),
      onData: (stream, session, cb) => this.onData(stream, session, cb),
    } as ConstructorParameters<typeof SMTPServer>[0]);
    // Before it listens, listen() rejects with the error and the relay exits MF_LISTEN_FAILED: no second report.
    this.server.on('error', (err) => this.server.server.listening && deps.log.warn({ err, listener: config.name }, 'smtp listener error'));
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.server.once('error', onError);
      this.server.listen(this.config.port, this.config.address, () => {
        this.server.server.off('error', onError);
        resolve();
      });
    });
  }

  /**
   * Stops accepting connections and lets each open session finish the transaction it is in;
   * an idle session is closed with 421 at once, and whatever is left at the deadline too.
   * (smtp-server's own close() answers 421 to every command, even mid-transaction.)
   */
  stopListening(): void {
    if (this.server.server.listening) this.server.server.close();
  }

  async drain(deadlineMs: number): Promise<void> {
    this.stopListening();
    const connections = (this.server as unknown as { connections: Set<InternalConnection> }).connections;
    const closeIdle = (all: boolean) => {
      for (const c of connections) {
        if (all || (!c.session?.envelope?.mailFrom && !c._dataStream)) {
          c.send(...refusalReply('drainClosing'), false);
          c.close();
        }
      }
    };
    while (connections.size && Date.now() < deadlineMs) {
      closeIdle(false);
      await new Promise((r) => setTimeout(r, 25));
    }
    closeIdle(true);
  }

  /** Closes at once (tests, and listeners that never came up). */
  close(): Promise<void> {
    return this.drain(0);
  }

  /** Limits smtp-server reads per command; a reload changes them in place. */
  applyLimits(limits: RelayConfig['limits']): void {
    Object.assign(this.server.options, { size: limits.maxMessageSize, maxRecipients: limits.maxRecipients, maxClients: limits.maxConnections + CONNECT_HEADROOM, socketTimeout: limits.idleTimeout * 1000 });
  }

  private get connections(): Set<InternalConnection> {
    return (this.server as unknown as { connections: Set<InternalConnection> }).connections;
  }

  /** The idle timeout smtp-server arms for this session now (smtp-server-patch.ts asks at every command). */
  private timeoutFor(session: SMTPServerSession): number {
    const state = session as SessionState;
    return sessionTimeoutMs(this.deps.policy().config.limits, { startedAt: state.connectedAt ?? Date.now(), started: !!state.started }, this.stressed, Date.now());
  }

  /**
   * Whether the listener is under stress; when it becomes so, idle sessions are re-armed with
   * the short timeout at once (at most once a second), not at their next command, which an
   * idle session never sends.
   */
  private checkStress(): void {
    const { maxConnections } = this.deps.policy().config.limits;
    const stressed = this.connections.size > STRESS_SHARE * maxConnections;
    const now = Date.now();
    if (stressed && (!this.stressed || now - this.stressSweptAt > 1000)) {
      this.stressed = true;
      this.stressSweptAt = now;
      for (const c of this.connections) if (!c._dataStream && !c._handlerPending && !c._closing) c._armTimeout?.();
    }
    this.stressed = stressed;
  }

  get port(): number {
    return (this.server.server.address() as net.AddressInfo).port;
  }

  /** New key and certificate for new TLS sessions (a renewed Secret). */
  updateTls(tls: { key: Buffer; cert: Buffer }): void {
    if (this.config.tls !== 'none') this.server.updateSecureContext({ key: tls.key, cert: tls.cert });
  }

  private reject(err: SmtpRefusal, session: SMTPServerSession | undefined, cb: (err?: Error | null) => void): void {
    const reason = err.reason;
    this.deps.metrics.rejections.inc({ reason });
    this.deps.log.info({ event: 'rejected', listener: this.config.name, session: session?.id, client: session?.remoteAddress, user: session?.user, reason, reply: `${err.responseCode} ${err.message}` }, 'refused');
    const e = new Error(err.message) as Error & { responseCode: number };
    e.responseCode = err.responseCode;
    cb(e);
  }

  /**
   * Whether the client is in a trusted network. Remembered per address (applications send from
   * a handful of pod addresses, and each connection would otherwise look it up again).
   */
  private isTrusted(session: SMTPServerSession): boolean {
    const address = session.remoteAddress;
    let trusted = this.trustedAddresses.get(address);
    if (trusted === undefined) {
      const plain = plainAddress(address);
      trusted = this.trusted.check(plain, net.isIPv6(plain) ? 'ipv6' : 'ipv4');
      if (this.trustedAddresses.size >= 10_000) this.trustedAddresses.clear();
      this.trustedAddresses.set(address, trusted);
    }
    return trusted;
  }

  private onConnect(session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const { limits } = this.deps.policy().config;
    if (!this.deps.accepting()) return this.reject(refusal('draining'), session, cb);
    const n = (this.perClient.get(session.remoteAddress) ?? 0) + 1;
    if (n > limits.maxConnectionsPerClient) {
      return this.reject(refusal('tooManyFromClient', { client: session.remoteAddress, limit: limits.maxConnectionsPerClient }), session, cb);
    }
    if (!this.makeRoom(session, limits.maxConnections)) {
      return this.reject(refusal('tooManySessions', { limit: limits.maxConnections }), session, cb);
    }
    this.perClient.set(session.remoteAddress, n);
    (session as SessionState).counted = true;
    (session as SessionState).connectedAt = Date.now();
    this.checkStress();
    this.deps.metrics.sessions.inc({ listener: this.config.name });
    cb();
  }

  /**
   * Whether a new session fits; in a full listener, the longest idle session that never
   * started is closed to make room (evictionCandidate), so a flood of idle connections cannot
   * lock applications out until its timeouts run out.
   */
  private makeRoom(newcomer: SMTPServerSession, maxConnections: number): boolean {
    // Every connection but the newcomer, counted or not, is at most this many: no list to build on each connect.
    if (this.connections.size - 1 < maxConnections) return true;
    const live = [...this.connections].filter((c) => c.session !== newcomer && (c.session as SessionState | undefined)?.counted && !c._closing && !c._evicted);
    if (live.length < maxConnections) return true;
    const victim = evictionCandidate(live.map((c) => ({ key: c, started: !!(c.session as SessionState).started, busy: !!(c._dataStream || c._handlerPending), connectedAt: (c.session as SessionState).connectedAt ?? 0 })));
    if (!victim) return false;
    victim._evicted = true;
    this.deps.metrics.rejections.inc({ reason: REFUSALS.evicted.reason });
    this.deps.log.info({ event: 'session_evicted', listener: this.config.name, session: (victim.session as { id?: string }).id, client: (victim.session as { remoteAddress?: string }).remoteAddress }, 'listener full: closed an idle session that had not started, to make room');
    victim.send(...refusalReply('evicted'));
    victim.close();
    return true;
  }

  private onClose(session: SMTPServerSession): void {
    if (!(session as SessionState).counted) return;
    if (this.stressed) this.checkStress();
    const n = (this.perClient.get(session.remoteAddress) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(session.remoteAddress);
    else this.perClient.set(session.remoteAddress, n);
    this.deps.metrics.sessions.dec({ listener: this.config.name });
  }

  /**
   * AUTH, bounded: an authorization identity other than the user is refused (RFC 4616: we
   * authorize nobody to act as another), an address or user name with too many recent
   * failures is refused before any hashing, hashing waits its turn (or is refused when the
   * queue is full), every failure is answered after limits.authFailureDelay, and the session
   * ends after limits.authFailuresPerSession failures.
   * The reply never tells an unknown user from a wrong password.
   */
  private onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb: (err: Error | null | undefined, response?: { user?: unknown }) => void): void {
    const { users, config } = this.deps.policy();
    const user = auth.username ?? '';
    const client = plainAddress(session.remoteAddress);
    const state = session as SessionState;
    const fail = (reason: AuthFailureReason, refused: SmtpRefusal) => {
      state.authFailures = (state.authFailures ?? 0) + 1;
      if (state.authFailures >= config.limits.authFailuresPerSession) {
        reason = 'too_many_failures';
        refused = refusal('authClosing', { refused: refused.text, failures: state.authFailures });
      }
      this.deps.metrics.authFailures.inc({ reason });
      // Answered late (Postfix's smtpd_error_sleep_time, Dovecot's auth_failure_delay): a
      // client that waits for replies can then try only so often, however fast we refuse.
      const delay = config.limits.authFailureDelay * 1000;
      if (delay > 0) setTimeout(() => this.reject(refused, session, cb), delay).unref();
      else this.reject(refused, session, cb);
    };
    const authzid = (auth as { authzid?: string }).authzid;
    if (authzid && authzid !== user) {
      return fail('authzid', refusal('authzid'));
    }
    if (this.auth.throttle.locked(client, user, Date.now())) {
      return fail('locked_out', refusal('authLockedOut'));
    }
    users.verify(user, auth.password ?? '', Date.now(), this.auth.gate).then(
      (ok) => {
        if (ok === 'busy') return fail('busy', refusal('authBusy'));
        if (!ok) {
          this.auth.throttle.failed(client, user, Date.now());
          return fail('bad_credentials', refusal('authInvalid'));
        }
        this.auth.throttle.succeeded(client, user, Date.now());
        state.started = true;
        cb(null, { user });
      },
      (err: Error) => cb(err),
    );
  }

  private onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const { config } = this.deps.policy();
    const user = typeof session.user === 'string' ? session.user : undefined;
    if (!user && !this.isTrusted(session) && this.config.auth === 'required') {
      return this.reject(refusal('authRequired'), session, cb);
    }
    if (user && !senderAllowed(config, user, address.address)) {
      return this.reject(refusal('senderDenied', { address: address.address, problem: senderProblem(user, address.address) }), session, cb);
    }
    if (user && !this.rate.allow(user, config.limits.messagesPerUserPerMinute, Date.now())) {
      return this.reject(refusal('rateLimited', { user, limit: config.limits.messagesPerUserPerMinute }), session, cb);
    }
    this.deps.spool.freeBytes().then(
      (free) => {
        if (free < config.spool.minFreeBytes) return this.reject(refusal('storageFull'), session, cb);
        (session as SessionState).started = true;
        cb();
      },
      () => this.reject(refusal('spoolUnavailable'), session, cb),
    );
  }

  private onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const rcpt = address.address;
    if (!this.isTrusted(session) && typeof session.user !== 'string') {
      return this.reject(refusal('relayDenied', { rcpt }), session, cb);
    }
    const at = rcpt.lastIndexOf('@');
    const local = rcpt.slice(0, at);
    if (at <= 0 || !/^[^\s@]+\.[^\s@]+$/.test(rcpt.slice(at + 1))) {
      return this.reject(refusal('notMailbox', { rcpt }), session, cb);
    }
    // Source routes and percent/bang routing would let a client pick the next hop (open relay tricks).
    if (rcpt.startsWith('@') || /[%!]/.test(local) || local.includes('@')) {
      return this.reject(refusal('routedAddress', { rcpt }), session, cb);
    }
    const { suppression } = this.deps.policy().config;
    const suppressed = suppression.enabled ? this.deps.suppressions.lookup(session.envelope.mailFrom ? session.envelope.mailFrom.address : '', rcpt) : undefined;
    if (suppressed && suppression.action === 'refuse') {
      this.deps.metrics.suppressionRefusals.inc({ action: 'refuse' });
      return this.reject(refusal('suppressed', { rcpt, why: describeSuppression(suppressed) }), session, cb);
    }
    // smtp-server puts this very object into the envelope: DATA reads the mark from there.
    (address as RcptAddress).suppressed = suppressed;
    cb();
  }

  private onData(stream: Readable & { sizeExceeded?: boolean }, session: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): void {
    const { config } = this.deps.policy();
    const started = process.hrtime.bigint();
    let writer: SpoolWriter | undefined;
    const fail = (err: unknown) => {
      void writer?.abort().catch((e: unknown) => this.deps.log.warn({ err: e }, 'could not remove an unacknowledged spool file'));
      if (err instanceof SmtpRefusal) return this.reject(err, session, cb);
      if ((err as { code?: string }).code === 'ECONNECTION') {
        // The client hung up before the final dot: nothing was acknowledged, nothing is kept, and it is not our failure.
        this.deps.log.info({ event: 'client_disconnected', listener: this.config.name, session: session.id, client: session.remoteAddress, user: session.user }, 'client hung up during DATA; nothing kept');
        return cb(err as Error);
      }
      this.deps.log.error({ err, session: session.id }, 'could not store message');
      this.reject(refusal('storeFailed'), session, cb);
    };
    (async () => {
      writer = this.deps.spool.createWriter();
      const facts = await this.receiveBody(stream, session, writer, config.limits.maxHeaderSize);
      if (stream.sizeExceeded) throw refusal('tooBig', { limit: config.limits.maxMessageSize });
      const user = typeof session.user === 'string' ? session.user : undefined;
      if (user) {
        // Every field that names the sender, not From alone: Sender and Resent-* are shown by
        // mail programs too ("on behalf of"), and are as much an impersonation.
        const originators = originatorAddresses(facts);
        const bad = originators.find((o) => !senderAllowed(config, user, o.address));
        if (bad || !originators.some((o) => o.field === 'From')) {
          throw bad ? refusal('headerSenderDenied', { field: bad.field, address: bad.address, problem: senderProblem(user, bad.address) }) : refusal('noFrom');
        }
      }
      const now = Date.now();
      const id = writer.id;
      const envelope: Envelope = {
        id,
        sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        recipients: session.envelope.rcptTo.map(recipientState),
        receivedAt: now,
        listener: this.config.name,
        client: session.remoteAddress,
        user,
        messageId: facts.messageId,
        eightBit: bodyType(session) === '8BITMIME' || undefined,
        headerLength: facts.length,
        attempts: 0,
        nextAttemptAt: now,
      };
      // Small mail goes to the journal (group commit), large mail to a file of its own.
      const entry = await writer.keep(envelope);
      const size = entry.bodyLength;
      this.deps.metrics.spoolWriteSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
      this.deps.metrics.received.inc({ listener: this.config.name });
      const suppressed = envelope.recipients.filter((r) => r.status === 'failed').length;
      if (suppressed) this.deps.metrics.suppressionRefusals.inc({ action: 'bounce' }, suppressed);
      this.deps.log.info(
        { event: 'received', queueId: id, messageId: facts.messageId, listener: this.config.name, client: session.remoteAddress, user, size, recipients: envelope.recipients.length, suppressed: suppressed || undefined },
        'received',
      );
      this.deps.accepted(entry);
      cb(null, `2.0.0 Ok: queued as ${id}`);
    })().catch(fail);
  }

  /**
   * Reads the DATA stream into the writer, the header completed with our trace fields. Takes
   * chunks from 'data' events (async iteration costs a promise per chunk, on every message);
   * the stream pauses only while a large body is written out to its file.
   */
  private receiveBody(stream: Readable, session: SMTPServerSession, writer: SpoolWriter, maxHeaderSize: number): Promise<HeaderFacts & { messageId: string }> {
    let head: Buffer | undefined = Buffer.alloc(0);
    let facts: (HeaderFacts & { messageId: string }) | undefined;
    const complete = (header: Buffer, rest: Buffer) => {
      const found = headerFacts(header);
      const added = addedHeaders(found, this.trace(session, writer.id));
      const addedBuf = Buffer.from(added.text);
      facts = { ...found, messageId: added.messageId, length: found.length + addedBuf.length };
      return writer.write(Buffer.concat([addedBuf, header, rest]));
    };
    const take = (chunk: Buffer): Promise<void> | undefined => {
      // RFC 5322 2.3 and RFC 5321 4.1.1.4: no NUL in a message; programs that read it as a C string see another message.
      if (chunk.indexOf(0) >= 0) throw refusal('nul');
      if (!head) return writer.write(chunk);
      head = head.length ? Buffer.concat([head, chunk]) : chunk;
      const end = headerEnd(head);
      // Refused, never cut short: the sender policy must read the whole header. Bytes held stay under the limit plus one chunk.
      if (end > maxHeaderSize || (end < 0 && head.length > maxHeaderSize)) {
        head = undefined;
        throw refusal('headerTooLarge', { limit: maxHeaderSize });
      }
      if (end < 0) return undefined;
      const whole = head;
      head = undefined;
      return complete(whole.subarray(0, end), whole.subarray(end));
    };
    return new Promise((resolve, reject) => {
      let writing: Promise<void> | undefined;
      let failed = false;
      const failWith = (err: unknown) => {
        if (failed) return;
        failed = true;
        // Read the rest so the session can go on to the reply; answer once no write is under
        // way (the caller then removes what was written).
        stream.resume();
        void (writing ?? Promise.resolve()).catch(() => undefined).then(() => reject(err));
      };
      stream.on('data', (chunk: Buffer) => {
        if (failed) return;
        try {
          const pending = writing ? writing.then(() => take(chunk)) : take(chunk);
          if (!pending) return;
          stream.pause();
          const current: Promise<void> = pending.then(() => {
            if (writing === current) writing = undefined;
            if (!failed) stream.resume();
          });
          writing = current;
          current.catch(failWith);
        } catch (err) {
          failWith(err);
        }
      });
      stream.once('error', failWith);
      stream.once('end', () => {
        void (writing ?? Promise.resolve())
          .then(() => (head && !failed ? complete(head, Buffer.alloc(0)) : undefined))
          .then(() => (failed ? undefined : resolve(facts!)), failWith);
      });
    });
  }

  private trace(session: SMTPServerSession, queueId: string) {
    const rcpts = session.envelope.rcptTo;
    const tlsInfo = (session as { tlsOptions?: { name?: string; version?: string } }).tlsOptions;
    return {
      heloName: session.hostNameAppearsAs,
      clientAddress: plainAddress(session.remoteAddress),
      clientHostname: session.clientHostname,
      byHostname: this.deps.policy().config.hostname,
      protocol: session.transmissionType || 'ESMTP',
      queueId,
      recipient: rcpts.length === 1 ? rcpts[0]!.address : undefined,
      tls: session.secure && tlsInfo?.version ? `using ${tlsInfo.version} with cipher ${tlsInfo.name ?? 'unknown'}` : undefined,
      date: new Date(),
    };
  }
}

interface SessionState {
  counted?: boolean;
  /** When the session was greeted, for limits.startTimeout. */
  connectedAt?: number;
  /** Logged in, or a MAIL FROM accepted: the start deadline no longer applies. */
  started?: boolean;
  authFailures?: number;
}

/** The parts of smtp-server's connection object that draining reads. */
interface InternalConnection {
  session?: { envelope?: { mailFrom?: unknown } };
  /** Closed to make room for a newcomer (makeRoom): no longer counted as live. */
  _evicted?: boolean;
  _dataStream?: unknown;
  _handlerPending?: boolean;
  _closing?: boolean;
  _armTimeout?(): void;
  send(code: number, text: string, context?: unknown): void;
  close(): void;
}

export function createListeners(deps: IntakeDeps): SmtpListener[] {
  const rate = new RateWindow();
  const auth = new AuthGuard(() => deps.policy().config.limits);
  return deps.policy().config.listeners.map((l) => new SmtpListener(l, deps, rate, auth));
}
