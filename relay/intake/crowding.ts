/**
 * A listener's crowd: connections per client (limits.maxConnectionsPerClient), room for a
 * newcomer in a full listener (an idle session that never started is closed for it), stress
 * (sessions above 80% of limits.maxConnections shorten the idle timeout, Postfix's
 * `${stress?}`), and the start deadline. The decisions are pure functions; Crowd acts on them.
 */
import type { Session } from './smtp/session.js';
import type { RelayConfig } from '../config.js';
import { refusal, refusalReply, REFUSALS, type SmtpRefusal } from '../refusals.js';
import type { IntakeDeps } from './deps.js';
import type { InternalConnection, SessionState } from './session.js';

/** Connections the engine lets through to onConnect beyond maxConnections, so one can be made room for. */
export const CONNECT_HEADROOM = 64;

/** Stress (Postfix's term): a listener's sessions above this share of maxConnections. */
const STRESS_SHARE = 0.8;

/** Whether a listener with this many connections is under stress. */
export function underStress(connections: number, maxConnections: number): boolean {
  return connections > STRESS_SHARE * maxConnections;
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

/** One listener's sessions as a crowd: admitted and released by its onConnect and onClose. */
export class Crowd {
  private readonly perClient = new Map<string, number>();
  private stressed = false;
  private stressSweptAt = 0;

  constructor(
    private readonly listener: string,
    private readonly connections: () => Set<InternalConnection>,
    private readonly deps: Pick<IntakeDeps, 'policy' | 'metrics' | 'log'>,
  ) {}

  /** Counts a new session in, or says why it is refused (its client holds too many, or no room could be made). */
  admit(session: Session): SmtpRefusal | undefined {
    const { limits } = this.deps.policy().config;
    const n = (this.perClient.get(session.remoteAddress) ?? 0) + 1;
    if (n > limits.maxConnectionsPerClient) return refusal('tooManyFromClient', { client: session.remoteAddress, limit: limits.maxConnectionsPerClient });
    if (!this.makeRoom(session, limits.maxConnections)) return refusal('tooManySessions', { limit: limits.maxConnections });
    this.perClient.set(session.remoteAddress, n);
    (session as SessionState).counted = true;
    (session as SessionState).connectedAt = Date.now();
    this.checkStress();
    this.deps.metrics.sessions.inc({ listener: this.listener });
    return undefined;
  }

  /** A session ended: counted out, if it was counted in. */
  release(session: Session): void {
    if (!(session as SessionState).counted) return;
    if (this.stressed) this.checkStress();
    const n = (this.perClient.get(session.remoteAddress) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(session.remoteAddress);
    else this.perClient.set(session.remoteAddress, n);
    this.deps.metrics.sessions.dec({ listener: this.listener });
  }

  /** The idle timeout the engine arms for this session now (it asks at every command). */
  timeoutFor(session: Session): number {
    const state = session as SessionState;
    return sessionTimeoutMs(this.deps.policy().config.limits, { startedAt: state.connectedAt ?? Date.now(), started: !!state.started }, this.stressed, Date.now());
  }

  /**
   * Whether the listener is under stress; when it becomes so, idle sessions are re-armed with
   * the short timeout at once (at most once a second), not at their next command, which an
   * idle session never sends.
   */
  private checkStress(): void {
    const connections = this.connections();
    const stressed = underStress(connections.size, this.deps.policy().config.limits.maxConnections);
    const now = Date.now();
    if (stressed && (!this.stressed || now - this.stressSweptAt > 1000)) {
      this.stressed = true;
      this.stressSweptAt = now;
      for (const c of connections) if (!c._dataStream && !c._handlerPending && !c._closing) c._armTimeout?.();
    }
    this.stressed = stressed;
  }

  /**
   * Whether a new session fits; in a full listener, the longest idle session that never
   * started is closed to make room (evictionCandidate), so a flood of idle connections cannot
   * lock applications out until its timeouts run out.
   */
  private makeRoom(newcomer: Session, maxConnections: number): boolean {
    const connections = this.connections();
    // Every connection but the newcomer, counted or not, is at most this many: no list to build on each connect.
    if (connections.size - 1 < maxConnections) return true;
    const live = [...connections].filter((c) => c.session !== newcomer && (c.session as SessionState | undefined)?.counted && !c._closing && !c._evicted);
    if (live.length < maxConnections) return true;
    const victim = evictionCandidate(live.map((c) => ({ key: c, started: !!(c.session as SessionState).started, busy: !!(c._dataStream || c._handlerPending), connectedAt: (c.session as SessionState).connectedAt ?? 0 })));
    if (!victim) return false;
    victim._evicted = true;
    this.deps.metrics.rejections.inc({ reason: REFUSALS.evicted.reason });
    this.deps.log.info({ event: 'session_evicted', listener: this.listener, session: (victim.session as { id?: string }).id, client: (victim.session as { remoteAddress?: string }).remoteAddress }, 'listener full: closed an idle session that had not started, to make room');
    victim.send(...refusalReply('evicted'));
    victim.close();
    return true;
  }
}
