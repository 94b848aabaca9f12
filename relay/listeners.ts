/**
 * A relay's SMTP listeners as one set: started together (a port that cannot be bound stops the
 * start with MF_LISTEN_FAILED), replaced one by one when their settings change on a reload
 * (the others keep their sessions; the new ones keep the AUTH failures and rates counted so
 * far; the old ones' sessions finish their mail meanwhile), and drained together when the
 * relay stops.
 */
import type { ListenerConfig } from './config.js';
import { ErrorCodes, MailfleetError } from './errors.js';
import type { IntakeDeps, IntakePolicy } from './intake/deps.js';
import { createListener, createListeners, intakeShared, type IntakeShared, type SmtpListener } from './intake/listener.js';

const listenerKey = (l: ListenerConfig) => JSON.stringify(l);

/** How long the sessions of a listener retired by a reload may take to finish their transaction. */
const RETIRED_SESSIONS_MS = 60_000;

export class ListenerSet {
  private listeners: SmtpListener[] = [];
  /** Listeners a reload replaced, until their last session has finished (or been closed at the deadline). */
  private readonly retiring = new Set<SmtpListener>();
  /**
   * One rate window and one AUTH guard for the relay's life. A listener a reload replaces
   * takes them over: with its own, a client locked out for failed logins was let in again
   * (and the per-user rate and the hashing bound were counted twice).
   */
  private readonly shared: IntakeShared;

  constructor(private readonly deps: IntakeDeps) {
    this.shared = intakeShared(deps);
  }

  async start(): Promise<void> {
    this.listeners = createListeners(this.deps, this.shared);
    try {
      for (const l of this.listeners) await l.listen();
    } catch (err) {
      await Promise.all(this.listeners.map((l) => l.close()));
      throw listenFailed(err);
    }
  }

  /**
   * Takes a new policy (IntakeDeps.policy already returns it): listeners whose settings changed
   * are replaced at once, the rest get its certificate and limits. Every new port is bound
   * before anything else changes, so one that another process holds refuses the reload
   * (MF_LISTEN_FAILED) with the running listeners as they were; only a port a replaced
   * listener holds is bound after that one stops. A replaced listener's open sessions may
   * finish the mail they are in, for up to RETIRED_SESSIONS_MS, without holding up the reload.
   */
  async apply(policy: IntakePolicy): Promise<void> {
    const current = new Set(this.listeners.map((l) => listenerKey(l.config)));
    const wanted = new Set(policy.config.listeners.map(listenerKey));
    const retired = this.listeners.filter((l) => !wanted.has(listenerKey(l.config)));
    const fresh = policy.config.listeners.filter((c) => !current.has(listenerKey(c))).map((c) => createListener(c, this.deps, this.shared));
    const onRetiredPort = (l: SmtpListener) => l.config.port !== 0 && retired.some((r) => r.config.port === l.config.port);
    const first = fresh.filter((l) => !onRetiredPort(l));
    try {
      for (const l of first) await l.listen();
    } catch (err) {
      await Promise.all(first.map((l) => l.close()));
      throw listenFailed(err);
    }
    for (const l of retired) {
      l.stopListening();
      this.retiring.add(l);
      void l.drain(Date.now() + RETIRED_SESSIONS_MS).finally(() => this.retiring.delete(l));
    }
    this.listeners = [...this.listeners.filter((l) => !retired.includes(l)), ...first];
    for (const l of fresh.filter(onRetiredPort)) {
      await l.listen().catch((err: unknown) => Promise.reject(listenFailed(err)));
      this.listeners.push(l);
    }
    for (const l of this.listeners) {
      if (policy.tls) l.updateTls(policy.tls);
      l.applyLimits(policy.config.limits);
    }
  }

  get all(): readonly SmtpListener[] {
    return this.listeners;
  }

  get ports(): Record<string, number> {
    return Object.fromEntries(this.listeners.map((l) => [l.config.name, l.port]));
  }

  stopListening(): void {
    for (const l of this.listeners) l.stopListening();
  }

  /** Lets open sessions, on retired listeners too, finish their transaction until the deadline (see SmtpListener.drain). */
  async drain(deadlineMs: number): Promise<void> {
    await Promise.all([...this.listeners, ...this.retiring].map((l) => l.drain(deadlineMs)));
  }
}

function listenFailed(err: unknown): MailfleetError {
  return new MailfleetError(ErrorCodes.LISTEN_FAILED, `cannot listen: ${(err as Error).message}`, 'another process holds the port, or the address is not on this host');
}
