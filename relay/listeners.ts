/**
 * A relay's SMTP listeners as one set: started together (a port that cannot be bound stops the
 * start with MF_LISTEN_FAILED), replaced one by one when their settings change on a reload
 * (the others keep their sessions; the new ones keep the AUTH failures and rates counted so
 * far), and drained together when the relay stops.
 */
import type { ListenerConfig } from './config.js';
import { ErrorCodes, MailfleetError } from './errors.js';
import type { IntakeDeps, IntakePolicy } from './intake/deps.js';
import { createListeners, intakeShared, type IntakeShared, type SmtpListener } from './intake/listener.js';

const listenerKey = (l: ListenerConfig) => JSON.stringify(l);

/** How long the sessions of a listener retired by a reload may take to finish their transaction. */
const RETIRED_SESSIONS_MS = 60_000;

export class ListenerSet {
  private listeners: SmtpListener[] = [];
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
      throw new MailfleetError(ErrorCodes.LISTEN_FAILED, `cannot listen: ${(err as Error).message}`, 'another process holds the port, or the address is not on this host');
    }
  }

  /** Takes a new policy (IntakeDeps.policy already returns it): listeners whose settings changed are replaced, the rest get its certificate and limits. */
  async apply(policy: IntakePolicy): Promise<void> {
    const keep = new Map(this.listeners.map((l) => [listenerKey(l.config), l]));
    const wanted = policy.config.listeners.map(listenerKey);
    const retired = this.listeners.filter((l) => !wanted.includes(listenerKey(l.config)));
    // Retired listeners stop listening now (their port may be the new one's); their sessions may finish their transaction.
    await Promise.all(retired.map((l) => l.drain(Date.now() + RETIRED_SESSIONS_MS)));
    const fresh = createListeners(this.deps, this.shared).filter((l) => !keep.has(listenerKey(l.config)));
    for (const l of fresh) await l.listen();
    this.listeners = [...this.listeners.filter((l) => !retired.includes(l)), ...fresh];
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

  /** Lets open sessions finish their transaction until the deadline (see SmtpListener.drain). */
  async drain(deadlineMs: number): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.drain(deadlineMs)));
  }
}
