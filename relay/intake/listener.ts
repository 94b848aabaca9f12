/**
 * An SMTP listener (the engine in smtp/): its options, listening, draining and reloads, and each
 * step of a session handed to the module that decides it: the crowd at connect (crowding.ts),
 * AUTH (auth.ts), who may relay and which sender (relay-access.ts, sender-policy.ts, with the
 * per-user rate and the spool's free space) at MAIL and RCPT, and DATA (accept.ts). Every
 * refusal is counted and logged here.
 */
import type net from 'node:net';
import type { ListenerConfig, RelayConfig } from '../config.js';
import { refusal, refusalReply, type CountedRefusalName, type SmtpRefusal } from '../refusals.js';
import type { Session } from './smtp/session.js';
import type { Authentication } from './smtp/sasl.js';
import { SmtpEngine } from './smtp/server.js';
import type { Address } from './smtp/syntax.js';
import { describeSuppression } from '../suppression.js';
import { receiveReport, takesReportsFor, type ReportDeps } from '../bounces/inbound.js';
import { returnPathOwners, type ReturnPathOwner } from '../bounces/return-path.js';
import { acceptMessage } from './accept.js';
import { AuthGuard } from './auth.js';
import { CONNECT_HEADROOM, Crowd } from './crowding.js';
import type { IntakeDeps } from './deps.js';
import { RateWindow } from './rate-limit.js';
import { mailFromAccessRefusal, recipientRefusal, tooManyRecipients, TrustedNetworks } from './relay-access.js';
import { envelopeSenderRefusal } from './sender-policy.js';
import { connectionsOf, sessionUser, type InternalConnection, type RcptAddress, type SessionState } from './session.js';

export class SmtpListener {
  readonly server: SmtpEngine;
  private readonly trusted: TrustedNetworks;
  private readonly crowd: Crowd;

  constructor(
    readonly config: ListenerConfig,
    private readonly deps: IntakeDeps,
    private readonly rate: RateWindow,
    private readonly auth: AuthGuard,
  ) {
    this.trusted = new TrustedNetworks(config.trustedNetworks);
    this.crowd = new Crowd(config.name, () => this.connections, deps);
    const policy = deps.policy();
    const limits = policy.config.limits;
    const authOffered = config.auth !== 'none';
    this.server = new SmtpEngine({
      name: policy.config.hostname,
      banner: 'mailfleet',
      implicitTls: config.tls === 'implicit',
      // A port without TLS has no certificate to offer: STARTTLS is neither advertised nor taken (502).
      starttls: config.tls !== 'none' && config.tls !== 'implicit',
      key: policy.tls?.key,
      cert: policy.tls?.cert,
      size: limits.maxMessageSize,
      // A ceiling on sockets only: onConnect enforces maxConnections itself, closing an idle
      // session to make room (crowding.ts), which needs the newcomer to get that far.
      maxClients: limits.maxConnections + CONNECT_HEADROOM,
      socketTimeout: limits.idleTimeout * 1000,
      sessionTimeoutMs: (session) => this.crowd.timeoutFor(session),
      authEnabled: authOffered,
      authMethods: ['PLAIN', 'LOGIN'],
      allowInsecureAuth: config.allowInsecureAuth,
      greetingDelayMs: config.greetingDelay * 1000,
      // The engine's own refusals (AUTH before STARTTLS): counted and logged like ours.
      onBuiltinRefusal: (name: CountedRefusalName, session) => this.count(refusal(name), session),
      onConnect: (session, cb) => this.onConnect(session, cb),
      onClose: (session) => this.crowd.release(session),
      onAuth: (auth, session, cb) => this.onAuth(auth, session, cb),
      onMailFrom: (address, session, cb) => this.onMailFrom(address, session, cb),
      onRcptTo: (address, session, cb) => this.onRcptTo(address, session, cb),
      onData: (stream, session, cb) => (this.config.role === 'bounces' ? receiveReport(stream, session, cb, this.reportDeps(), (err, s, done) => this.reject(err, s, done)) : acceptMessage(stream, session, cb, config.name, deps, (err, s, done) => this.reject(err, s, done))),
    });
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
   */
  stopListening(): void {
    if (this.server.server.listening) this.server.server.close();
  }

  async drain(deadlineMs: number): Promise<void> {
    this.stopListening();
    const connections = this.connections;
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

  /** Limits the engine reads per command; a reload changes them in place. */
  applyLimits(limits: RelayConfig['limits']): void {
    this.server.applyLimits({ size: limits.maxMessageSize, maxClients: limits.maxConnections + CONNECT_HEADROOM, socketTimeout: limits.idleTimeout * 1000 });
  }

  get port(): number {
    return (this.server.server.address() as net.AddressInfo).port;
  }

  /** New key and certificate for new TLS sessions (a renewed Secret). */
  updateTls(tls: { key: Buffer; cert: Buffer }): void {
    if (this.config.tls !== 'none') this.server.updateSecureContext({ key: tls.key, cert: tls.cert });
  }

  private get connections(): Set<InternalConnection> {
    return connectionsOf(this.server);
  }

  private reject(err: SmtpRefusal, session: Session | undefined, cb: (err?: Error | null) => void): void {
    this.count(err, session);
    const e = new Error(err.message) as Error & { responseCode: number };
    e.responseCode = err.responseCode;
    cb(e);
  }

  private returnPaths(): { owners: ReturnPathOwner[]; key: string | undefined } {
    return returnPathsOf(this.deps.policy);
  }

  /** Return path domains that take unsubscribe mail. */
  private unsubscribeDomains(): string[] {
    return this.deps.policy().unsubscribe.flatMap((o) => (o.mailtoDomain ? [o.mailtoDomain] : []));
  }

  private reportDeps(): ReportDeps {
    const { owners, key } = this.returnPaths();
    const { deps } = this;
    return {
      hostname: deps.policy().config.hostname,
      owners,
      key: key ?? '',
      unsubscribeDomains: this.unsubscribeDomains(),
      linksKey: deps.policy().linksKey,
      publish: deps.publish,
      suppress: (candidate) => {
        if (deps.policy().config.suppression.enabled && deps.suppressions.add(candidate)) deps.metrics.suppressionAdditions.inc();
      },
      metrics: deps.metrics,
      log: deps.log,
      now: Date.now,
    };
  }

  private onConnect(session: Session, cb: (err?: Error | null) => void): void {
    if (!this.deps.accepting()) return this.reject(refusal('draining'), session, cb);
    const refused = this.crowd.admit(session);
    if (refused) return this.reject(refused, session, cb);
    cb();
  }

  private onAuth(auth: Authentication, session: Session, cb: (err: Error | null | undefined, response?: { user?: unknown }) => void): void {
    this.auth.authenticate(auth, session, this.deps.policy(), this.deps.metrics, (err, s, done) => this.reject(err, s, done), cb);
  }

  private onMailFrom(address: Address, session: Session, cb: (err?: Error | null) => void): void {
    // Reports come from any server, mostly from the null sender; what they may be sent to is decided at RCPT.
    if (this.config.role === 'bounces') {
      (session as SessionState).started = true;
      return cb();
    }
    const { config } = this.deps.policy();
    const user = sessionUser(session);
    let refused = mailFromAccessRefusal(!!user, () => this.trusted.has(session.remoteAddress), this.config.auth);
    if (!refused && user) refused = envelopeSenderRefusal(config, user, address.address);
    // A MAIL refused for its sender uses none of the user's rate.
    const limit = config.limits.messagesPerUserPerMinute;
    if (!refused && user && !this.rate.allow(user, limit, Date.now())) refused = refusal('rateLimited', { user, limit });
    if (refused) return this.reject(refused, session, cb);
    this.deps.spool.freeBytes().then(
      (free) => {
        if (free < config.spool.minFreeBytes) return this.reject(refusal('storageFull'), session, cb);
        (session as SessionState).started = true;
        cb();
      },
      () => this.reject(refusal('spoolUnavailable'), session, cb),
    );
  }

  /** Every refusal is counted under its reason and logged. */
  private count(err: SmtpRefusal, session: Session | undefined): void {
    const reason = err.reason;
    this.deps.metrics.rejections.inc({ reason });
    this.deps.log.info({ event: 'rejected', listener: this.config.name, session: session?.id, client: session?.remoteAddress, user: session?.user, reason, reply: `${err.responseCode} ${err.message}` }, 'refused');
  }

  private onRcptTo(address: Address, session: Session, cb: (err?: Error | null) => void): void {
    const rcpt = address.address;
    const limit = this.deps.policy().config.limits.maxRecipients;
    if (tooManyRecipients(session.envelope.rcptTo, rcpt, limit)) return this.reject(refusal('tooManyRecipients', { limit }), session, cb);
    if (this.config.role === 'bounces') {
      const { owners, key } = this.returnPaths();
      return key && takesReportsFor(rcpt, owners, key, this.unsubscribeDomains()) ? cb() : this.reject(refusal('notReturnPath', { rcpt }), session, cb);
    }
    const refused = recipientRefusal(rcpt, this.trusted.has(session.remoteAddress) || sessionUser(session) !== undefined);
    if (refused) return this.reject(refused, session, cb);
    const { suppression } = this.deps.policy().config;
    const suppressed = suppression.enabled ? this.deps.suppressions.lookup(session.envelope.mailFrom ? session.envelope.mailFrom.address : '', rcpt) : undefined;
    if (suppressed && suppression.action === 'refuse') {
      this.deps.metrics.suppressionRefusals.inc({ action: 'refuse' });
      return this.reject(refusal('suppressed', { rcpt, why: describeSuppression(suppressed) }), session, cb);
    }
    // The engine puts this very object into the envelope: DATA reads the mark from there.
    (address as RcptAddress).suppressed = suppressed;
    cb();
  }
}

/** The sender domains' return paths and the key of their tokens, from the current config. */
function returnPathsOf(policy: IntakeDeps['policy']): { owners: ReturnPathOwner[]; key: string | undefined } {
  const p = policy();
  return { owners: returnPathOwners(p.config.senderDomains), key: p.bouncesKey };
}

/** What all of a relay's listeners share for its whole life: the per-user rate window and the AUTH guard (failures, the hashing bound). */
export interface IntakeShared {
  rate: RateWindow;
  auth: AuthGuard;
}

export function intakeShared(deps: IntakeDeps): IntakeShared {
  return { rate: new RateWindow(), auth: new AuthGuard(() => deps.policy().config.limits) };
}

/** A relay's listeners as the current config lists them, on the state they share. */
export function createListeners(deps: IntakeDeps, shared: IntakeShared): SmtpListener[] {
  return deps.policy().config.listeners.map((l) => createListener(l, deps, shared));
}

/** One listener of the current config, on the state all of them share. */
export function createListener(config: ListenerConfig, deps: IntakeDeps, shared: IntakeShared): SmtpListener {
  return new SmtpListener(config, deps, shared.rate, shared.auth);
}
