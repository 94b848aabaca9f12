/**
 * The MailRelay's SmarthostAuthenticated condition, as a pure function of what its pods'
 * /metrics say about authenticating to the smarthost (`mailfleet_relay_smarthost_auth_failing`,
 * `..._successes_total`, `..._failures_total`): the autoscaler's scrape reads them, this
 * decides. The message reuses the relay's own words for each reason (what it means, what to
 * do: relay/delivery/smarthost-auth.ts), so `kubectl describe`, the deferral reply and
 * docs/providers.md say the same.
 */
import { SMARTHOST_AUTH_REASONS, type SmarthostAuthReason } from '../../relay/delivery/smarthost-auth.js';
import type { MailRelaySpec } from '../api/v1alpha1.js';
import type { Reason } from '../controllers/reasons.js';

export const SMARTHOST_AUTHENTICATED = 'SmarthostAuthenticated';

/** One pod's smarthost authentication state, from its /metrics. */
export interface SmarthostAuthSample {
  /** Authentications that succeeded since the pod started. */
  successes: number;
  /** Authentications that failed since the pod started, over all reasons. */
  failures: number;
  /** The reason its last authentication failed, when the last one failed (the gauge at 1). */
  failing?: SmarthostAuthReason | undefined;
}

/** The condition's reason for each of the relay's reasons (the metric's label). */
export const SMARTHOST_AUTH_CONDITION_REASONS = {
  basic_auth_disabled: 'BasicAuthDisabled',
  smtp_auth_disabled: 'SmtpAuthDisabled',
  credentials_rejected: 'CredentialsRejected',
  token_client_rejected: 'TokenClientRejected',
  token_not_authorized: 'TokenNotAuthorized',
  token_endpoint_unreachable: 'TokenEndpointUnreachable',
  credentials_unreadable: 'CredentialsUnreadable',
} as const satisfies Record<SmarthostAuthReason, Reason>;

export interface SmarthostAuthCondition {
  status: 'True' | 'False' | 'Unknown';
  reason: Reason;
  message: string;
}

/** Whether the relay authenticates to a smarthost (a user name and password, or OAuth 2.0): only then has it the condition. */
export function authenticatesToSmarthost(spec: MailRelaySpec): boolean {
  const s = spec.delivery.smarthost;
  return spec.delivery.route === 'smarthost' && !!s && (!!s.credentialsSecretName || !!s.oauth2);
}

const pods = (n: number) => `${n} relay pod${n === 1 ? '' : 's'}`;

/**
 * The condition from the pods that answered (pods whose /metrics did not, or which predate the
 * metric, are left out). Undefined when none answered: the condition stays as it was, so a
 * rollout or a missed scrape does not make it flap.
 *
 * False when any pod's last authentication failed, with the reason most pods give (ties: the
 * order of SMARTHOST_AUTH_REASONS) and the others named in the message; True when one has
 * authenticated and none is failing; Unknown NotYetAttempted when none has tried yet (a relay
 * authenticates when it first has mail to deliver).
 */
export function smarthostAuthCondition(samples: readonly (SmarthostAuthSample | undefined)[]): SmarthostAuthCondition | undefined {
  const answered = samples.filter((s): s is SmarthostAuthSample => s !== undefined);
  if (!answered.length) return undefined;
  const counts = new Map<SmarthostAuthReason, number>();
  for (const s of answered) if (s.failing) counts.set(s.failing, (counts.get(s.failing) ?? 0) + 1);
  if (counts.size) {
    const order = Object.keys(SMARTHOST_AUTH_REASONS) as SmarthostAuthReason[];
    const [first, ...others] = [...counts].sort(([a, x], [b, y]) => y - x || order.indexOf(a) - order.indexOf(b));
    const [reason, n] = first!;
    const text = SMARTHOST_AUTH_REASONS[reason];
    const also = others.length ? ` Also: ${others.map(([r, k]) => `${pods(k)} ${SMARTHOST_AUTH_CONDITION_REASONS[r]}`).join(', ')}.` : '';
    return {
      status: 'False',
      reason: SMARTHOST_AUTH_CONDITION_REASONS[reason],
      message: `${n} of ${pods(answered.length)} could not authenticate to the smarthost at the last attempt (${reason}): ${text.means} ${text.todo} Mail waits in the queue meanwhile.${also}`,
    };
  }
  const authenticated = answered.filter((s) => s.successes > 0).length;
  if (authenticated) {
    const rest = answered.length - authenticated;
    return { status: 'True', reason: 'Authenticated', message: `${authenticated} of ${pods(answered.length)} authenticated to the smarthost${rest ? `; ${rest} ha${rest === 1 ? 's' : 've'} not tried yet` : ''}; none is failing` };
  }
  return { status: 'Unknown', reason: 'NotYetAttempted', message: `none of ${pods(answered.length)} has authenticated to the smarthost yet: a relay does when it first has mail to deliver` };
}
