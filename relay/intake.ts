/**
 * Intake: the SMTP listeners (smtp-server). Decides who may relay (AUTH or a trusted
 * network, never an open relay), which senders an authenticated user may use, enforces the
 * limits, completes the header, and answers 250 only once the spool holds the message.
 */
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerSession } from 'smtp-server';
import { domainOf } from './address.js';
import type { ListenerConfig, RelayConfig } from './config.js';
import { SmtpRefusal, type RejectionReason } from './errors.js';
import { addedHeaders, fromAddresses, headerEnd, headerFacts, type HeaderFacts } from './headers.js';
import type { IntakeMetrics } from './metrics.js';
import { patchGreetingDelay } from './smtp-server-patch.js';
import type { Envelope, RecipientState, Spool, SpoolEntry, SpoolWriter } from './spool.js';
import { describeSuppression, type Suppression, type SuppressionList } from './suppression.js';
import type { UserStore } from './users.js';

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

const refuse = (code: number, enhanced: string, text: string, reason: RejectionReason) => new SmtpRefusal(code, enhanced, text, reason);

/** The `reason` label of refusals: errors.ts's set, and the suppression list's. */

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

/** A sender domain the user may use: a configured domain or a subdomain of one, allowed for the user. */
export function senderAllowed(config: RelayConfig, user: string, address: string): boolean {
  if (!config.senderDomains.length) return true;
  if (!address.includes('@')) return false;
  const domain = domainOf(address);
  return config.senderDomains.some((d) => (domain === d.domain || domain.endsWith(`.${d.domain}`)) && (!d.users || d.users.includes(user)));
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

  constructor(
    readonly config: ListenerConfig,
    private readonly deps: IntakeDeps,
    rate: RateWindow,
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
      hideSTARTTLS: config.tls === 'none',
      key: policy.tls?.key,
      cert: policy.tls?.cert,
      minVersion: 'TLSv1.2',
      size: limits.maxMessageSize,
      maxClients: limits.maxConnections,
      maxRecipients: limits.maxRecipients,
      socketTimeout: limits.idleTimeout * 1000,
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
    this.server.on('error', (err) => deps.log.warn({ err, listener: config.name }, 'smtp listener error'));
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
          c.send(421, '4.3.2 Service shutting down, closing the session; send again to reconnect', false);
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
    Object.assign(this.server.options, { size: limits.maxMessageSize, maxRecipients: limits.maxRecipients, maxClients: limits.maxConnections, socketTimeout: limits.idleTimeout * 1000 });
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
    if (!this.deps.accepting()) return this.reject(refuse(421, '4.3.2', 'Service shutting down, try another relay', 'connections'), session, cb);
    const n = (this.perClient.get(session.remoteAddress) ?? 0) + 1;
    if (n > limits.maxConnectionsPerClient) {
      return this.reject(refuse(421, '4.7.0', `Too many connections from ${session.remoteAddress} (limit ${limits.maxConnectionsPerClient}), try again later`, 'connections'), session, cb);
    }
    this.perClient.set(session.remoteAddress, n);
    (session as SessionState).counted = true;
    this.deps.metrics.sessions.inc({ listener: this.config.name });
    cb();
  }

  private onClose(session: SMTPServerSession): void {
    if (!(session as SessionState).counted) return;
    const n = (this.perClient.get(session.remoteAddress) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(session.remoteAddress);
    else this.perClient.set(session.remoteAddress, n);
    this.deps.metrics.sessions.dec({ listener: this.config.name });
  }

  private onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb: (err: Error | null | undefined, response?: { user?: unknown }) => void): void {
    const { users } = this.deps.policy();
    users.verify(auth.username ?? '', auth.password ?? '').then(
      (ok) => {
        if (ok) return cb(null, { user: auth.username });
        this.deps.metrics.authFailures.inc();
        this.reject(refuse(535, '5.7.8', 'Authentication credentials invalid', 'auth'), session, cb);
      },
      (err: Error) => cb(err),
    );
  }

  private onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const { config } = this.deps.policy();
    const user = typeof session.user === 'string' ? session.user : undefined;
    if (!user && !this.isTrusted(session) && this.config.auth === 'required') {
      return this.reject(refuse(530, '5.7.0', 'Authentication required: log in with AUTH before sending', 'auth_required'), session, cb);
    }
    if (user && !senderAllowed(config, user, address.address)) {
      const domain = address.address ? domainOf(address.address) : '<>';
      return this.reject(refuse(550, '5.7.1', `Sender <${address.address}> not allowed: user ${user} may not send from ${domain}`, 'sender_denied'), session, cb);
    }
    if (user && !this.rate.allow(user, config.limits.messagesPerUserPerMinute, Date.now())) {
      return this.reject(refuse(451, '4.7.1', `Rate limit: user ${user} may send ${config.limits.messagesPerUserPerMinute} messages per minute, try again later`, 'rate'), session, cb);
    }
    this.deps.spool.freeBytes().then(
      (free) => {
        if (free < config.spool.minFreeBytes) return this.reject(refuse(452, '4.3.1', 'Insufficient system storage, try again later', 'storage'), session, cb);
        cb();
      },
      () => this.reject(refuse(452, '4.3.1', 'Spool unavailable, try again later', 'storage'), session, cb),
    );
  }

  private onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const rcpt = address.address;
    if (!this.isTrusted(session) && typeof session.user !== 'string') {
      return this.reject(refuse(554, '5.7.1', `<${rcpt}>: Relay access denied (authenticate first)`, 'relay_denied'), session, cb);
    }
    const at = rcpt.lastIndexOf('@');
    const local = rcpt.slice(0, at);
    if (at <= 0 || !/^[^\s@]+\.[^\s@]+$/.test(rcpt.slice(at + 1))) {
      return this.reject(refuse(553, '5.1.3', `<${rcpt}>: Recipient address must be user@domain`, 'bad_address'), session, cb);
    }
    // Source routes and percent/bang routing would let a client pick the next hop (open relay tricks).
    if (rcpt.startsWith('@') || /[%!]/.test(local) || local.includes('@')) {
      return this.reject(refuse(553, '5.1.3', `<${rcpt}>: Source-routed, percent-hack and UUCP addresses are not accepted`, 'bad_address'), session, cb);
    }
    const { suppression } = this.deps.policy().config;
    const suppressed = suppression.enabled ? this.deps.suppressions.lookup(session.envelope.mailFrom ? session.envelope.mailFrom.address : '', rcpt) : undefined;
    if (suppressed && suppression.action === 'refuse') {
      this.deps.metrics.suppressionRefusals.inc({ action: 'refuse' });
      const text = `<${rcpt}>: ${describeSuppression(suppressed)}; remove with mailfleet suppressions remove`;
      return this.reject(refuse(550, '5.1.1', text, 'suppressed'), session, cb);
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
      this.deps.log.error({ err, session: session.id }, 'could not store message');
      this.reject(refuse(452, '4.3.1', 'Could not store the message, try again later', 'storage'), session, cb);
    };
    (async () => {
      writer = this.deps.spool.createWriter();
      const facts = await this.receiveBody(stream, session, writer);
      if (stream.sizeExceeded) throw refuse(552, '5.3.4', `Message too big: the limit is ${config.limits.maxMessageSize} bytes`, 'size');
      const user = typeof session.user === 'string' ? session.user : undefined;
      if (user) {
        const from = fromAddresses(facts);
        const bad = from.find((a) => !senderAllowed(config, user, a));
        if (bad || !from.length) {
          throw refuse(550, '5.7.1', bad ? `Header From <${bad}> not allowed: user ${user} may not send from ${domainOf(bad)}` : 'Message has no From header', 'sender_denied');
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
      const small = writer.smallBody();
      const entry = small ? await this.deps.spool.append(envelope, small) : await writer.commit(envelope);
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
  private receiveBody(stream: Readable, session: SMTPServerSession, writer: SpoolWriter): Promise<HeaderFacts & { messageId: string }> {
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
      if (!head) return writer.write(chunk);
      head = head.length ? Buffer.concat([head, chunk]) : chunk;
      const end = headerEnd(head);
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
          .then(() => (head ? complete(head, Buffer.alloc(0)) : undefined))
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
}

/** The parts of smtp-server's connection object that draining reads. */
interface InternalConnection {
  session?: { envelope?: { mailFrom?: unknown } };
  _dataStream?: unknown;
  send(code: number, text: string, context?: unknown): void;
  close(): void;
}

export function createListeners(deps: IntakeDeps): SmtpListener[] {
  const rate = new RateWindow();
  return deps.policy().config.listeners.map((l) => new SmtpListener(l, deps, rate));
}
