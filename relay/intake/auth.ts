/**
 * AUTH, bounded: failures counted per client address and per user name across all listeners
 * (AuthGuard), password hashing one at a time behind a bounded queue, every failure answered
 * late, and a session ended after limits.authFailuresPerSession failures. The reply never
 * tells an unknown user from a wrong password.
 */
import type { Session } from './smtp/session.js';
import type { Authentication } from './smtp/sasl.js';
import type { RelayConfig } from '../config.js';
import type { AuthFailureReason, IntakeMetrics } from '../metrics.js';
import { refusal, type SmtpRefusal } from '../refusals.js';
import { AuthThrottle, HashGate } from '../users.js';
import type { IntakePolicy } from './deps.js';
import { plainAddress, type SessionState } from './session.js';

type AuthCallback = (err: Error | null | undefined, response?: { user?: unknown }) => void;

/**
 * A failed AUTH as answered (pure): the session's limits.authFailuresPerSession-th failure
 * says so in its words and ends the session, counted as too_many_failures.
 */
export function failedAuthAnswer(reason: AuthFailureReason, refused: SmtpRefusal, failures: number, perSession: number): { reason: AuthFailureReason; refused: SmtpRefusal } {
  if (failures < perSession) return { reason, refused };
  return { reason: 'too_many_failures', refused: refusal('authClosing', { refused: refused.text, failures }) };
}

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

  /**
   * One AUTH command: an authorization identity other than the user is refused (RFC 4616: we
   * authorize nobody to act as another), an address or user name with too many recent
   * failures is refused before any hashing, hashing waits its turn (or is refused when the
   * queue is full), and every failure is answered after limits.authFailureDelay through
   * `reject`, which counts and logs the refusal.
   */
  authenticate(
    auth: Authentication,
    session: Session,
    { users, config }: IntakePolicy,
    metrics: IntakeMetrics,
    reject: (refused: SmtpRefusal, session: Session, cb: AuthCallback) => void,
    cb: AuthCallback,
  ): void {
    const user = auth.username ?? '';
    const client = plainAddress(session.remoteAddress);
    const state = session as SessionState;
    const fail = (why: AuthFailureReason, refusedWith: SmtpRefusal) => {
      state.authFailures = (state.authFailures ?? 0) + 1;
      const { reason, refused } = failedAuthAnswer(why, refusedWith, state.authFailures, config.limits.authFailuresPerSession);
      metrics.authFailures.inc({ reason });
      // Answered late (Postfix's smtpd_error_sleep_time, Dovecot's auth_failure_delay): a
      // client that waits for replies can then try only so often, however fast we refuse.
      const delay = config.limits.authFailureDelay * 1000;
      if (delay > 0) setTimeout(() => reject(refused, session, cb), delay).unref();
      else reject(refused, session, cb);
    };
    const authzid = (auth as { authzid?: string }).authzid;
    if (authzid && authzid !== user) {
      return fail('authzid', refusal('authzid'));
    }
    if (this.throttle.locked(client, user, Date.now())) {
      return fail('locked_out', refusal('authLockedOut'));
    }
    users.verify(user, auth.password ?? '', Date.now(), this.gate).then(
      (ok) => {
        if (ok === 'busy') return fail('busy', refusal('authBusy'));
        if (!ok) {
          this.throttle.failed(client, user, Date.now());
          return fail('bad_credentials', refusal('authInvalid'));
        }
        this.throttle.succeeded(client, user, Date.now());
        state.started = true;
        cb(null, { user });
      },
      (err: Error) => cb(err),
    );
  }
}
