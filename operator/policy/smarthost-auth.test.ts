import { describe, expect, it } from 'vitest';
import { SMARTHOST_AUTH_REASONS, type SmarthostAuthReason } from '../../relay/delivery/smarthost-auth.js';
import { mailRelaySpecSchema } from '../api/v1alpha1.js';
import { REASONS } from '../controllers/reasons.js';
import { SMARTHOST_AUTH_CONDITION_REASONS, authenticatesToSmarthost, smarthostAuthCondition, type SmarthostAuthSample } from './smarthost-auth.js';

const ok = (successes = 3): SmarthostAuthSample => ({ successes, failures: 0 });
const failing = (reason: SmarthostAuthReason, successes = 0): SmarthostAuthSample => ({ successes, failures: 1, failing: reason });
const fresh: SmarthostAuthSample = { successes: 0, failures: 0 };

describe('SmarthostAuthenticated', () => {
  it('is True when a pod authenticated and none is failing, saying how many have not tried', () => {
    expect(smarthostAuthCondition([ok(), ok(1)])).toEqual({ status: 'True', reason: 'Authenticated', message: '2 of 2 relay pods authenticated to the smarthost; none is failing' });
    expect(smarthostAuthCondition([ok(), fresh, fresh])).toEqual({ status: 'True', reason: 'Authenticated', message: '1 of 3 relay pods authenticated to the smarthost; 2 have not tried yet; none is failing' });
    // Failed once, then succeeded: the gauge is back to 0, and so is the condition.
    expect(smarthostAuthCondition([{ successes: 1, failures: 4 }])).toMatchObject({ status: 'True', message: '1 of 1 relay pod authenticated to the smarthost; none is failing' });
  });

  it('is Unknown NotYetAttempted when no pod has tried (a relay authenticates at its first delivery)', () => {
    expect(smarthostAuthCondition([fresh, fresh])).toEqual({ status: 'Unknown', reason: 'NotYetAttempted', message: 'none of 2 relay pods has authenticated to the smarthost yet: a relay does when it first has mail to deliver' });
  });

  it('is left as it was when no pod answered (a rollout, a missed scrape, relays older than the metrics)', () => {
    expect(smarthostAuthCondition([])).toBeUndefined();
    expect(smarthostAuthCondition([undefined, undefined])).toBeUndefined();
    // Pods that did not answer are not counted.
    expect(smarthostAuthCondition([undefined, ok()])).toMatchObject({ status: 'True', message: '1 of 1 relay pod authenticated to the smarthost; none is failing' });
  });

  it('is False with a CamelCase reason for each of the relay\'s, and the relay\'s own words on what it means and what to do', () => {
    for (const reason of Object.keys(SMARTHOST_AUTH_REASONS) as SmarthostAuthReason[]) {
      const c = smarthostAuthCondition([failing(reason), ok()])!;
      expect(c.status).toBe('False');
      expect(c.reason).toBe(SMARTHOST_AUTH_CONDITION_REASONS[reason]);
      expect(REASONS).toHaveProperty(c.reason);
      expect(c.message).toBe(`1 of 2 relay pods could not authenticate to the smarthost at the last attempt (${reason}): ${SMARTHOST_AUTH_REASONS[reason].means} ${SMARTHOST_AUTH_REASONS[reason].todo} Mail waits in the queue meanwhile.`);
    }
    expect(Object.values(SMARTHOST_AUTH_CONDITION_REASONS)).toEqual(['BasicAuthDisabled', 'SmtpAuthDisabled', 'CredentialsRejected', 'TokenClientRejected', 'TokenNotAuthorized', 'TokenEndpointUnreachable', 'CredentialsUnreadable']);
  });

  it('names the reason most pods give, ties in the relay\'s order, and the others after it', () => {
    const c = smarthostAuthCondition([failing('token_endpoint_unreachable'), failing('token_client_rejected'), failing('token_client_rejected'), failing('credentials_unreadable'), ok()])!;
    expect(c.reason).toBe('TokenClientRejected');
    expect(c.message).toMatch(/^2 of 5 relay pods could not authenticate .*\(token_client_rejected\)/);
    expect(c.message).toMatch(/ Also: 1 relay pod TokenEndpointUnreachable, 1 relay pod CredentialsUnreadable\.$/);
    expect(smarthostAuthCondition([failing('credentials_unreadable'), failing('basic_auth_disabled')])!.reason).toBe('BasicAuthDisabled');
    // A pod that succeeded before is failing now all the same: the last attempt counts.
    expect(smarthostAuthCondition([failing('credentials_rejected', 10)])!.reason).toBe('CredentialsRejected');
  });

  it('applies only to a smarthost route with credentials (a password or OAuth 2.0)', () => {
    const spec = (delivery: object) => mailRelaySpecSchema.parse({ delivery });
    const oauth2 = { provider: 'microsoft', user: 'relay@contoso.com', tenant: 't', clientId: 'c', secretName: 's' };
    expect(authenticatesToSmarthost(spec({ route: 'smarthost', smarthost: { host: 'h', credentialsSecretName: 'c' } }))).toBe(true);
    expect(authenticatesToSmarthost(spec({ route: 'smarthost', smarthost: { host: 'h', oauth2 } }))).toBe(true);
    expect(authenticatesToSmarthost(spec({ route: 'smarthost', smarthost: { host: 'h' } }))).toBe(false);
    expect(authenticatesToSmarthost(spec({ route: 'mx', smarthost: { host: 'h', oauth2 } }))).toBe(false);
    expect(authenticatesToSmarthost(spec({}))).toBe(false);
  });
});
