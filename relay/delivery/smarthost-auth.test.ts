import { describe, expect, it } from 'vitest';
import { SmarthostAuthFailure, smtpAuthReason, tokenErrorReason } from './smarthost-auth.js';

describe('smarthost authentication failures', () => {
  it("names Microsoft 365's refusals of Basic authentication, of SMTP AUTH, and of credentials apart", () => {
    expect(smtpAuthReason('535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [AM0PR01CA0001.eurprd01.prod.exchangelabs.com]')).toBe('basic_auth_disabled');
    expect(smtpAuthReason('550 5.7.30 Basic authentication is not supported for Client Submission.')).toBe('basic_auth_disabled');
    expect(smtpAuthReason('535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.')).toBe('smtp_auth_disabled');
    expect(smtpAuthReason('535 5.7.3 Authentication unsuccessful [SN4PR0501CA0054.namprd05.prod.outlook.com]')).toBe('credentials_rejected');
    expect(smtpAuthReason('535-5.7.8 Username and Password not accepted.')).toBe('credentials_rejected');
  });

  it("names a token endpoint's refusal of the client apart from a missing consent and from an outage", () => {
    expect(tokenErrorReason(401, { error: 'invalid_client' })).toBe('token_client_rejected');
    expect(tokenErrorReason(400, { error: 'invalid_client' })).toBe('token_client_rejected');
    expect(tokenErrorReason(400, { error: 'unauthorized_client' })).toBe('token_not_authorized');
    expect(tokenErrorReason(400, { error: 'invalid_grant' })).toBe('token_not_authorized');
    expect(tokenErrorReason(400, { error: 'invalid_scope' })).toBe('token_not_authorized');
    expect(tokenErrorReason(401, undefined)).toBe('token_client_rejected');
    expect(tokenErrorReason(502, undefined)).toBe('token_endpoint_unreachable');
    expect(tokenErrorReason(503, { error: 'temporarily_unavailable' })).toBe('token_endpoint_unreachable');
  });

  it('defers, with the reason and what to do in the reply', () => {
    const f = new SmarthostAuthFailure('basic_auth_disabled', 'smtp.office365.com:587 refused AUTH: 535 5.7.139 ...');
    expect(f.kind).toBe('deferred');
    expect(f.statusCode).toBe('4.7.0');
    expect(f.reply).toContain('basic_auth_disabled');
    expect(f.reply).toContain('oauth2');
  });
});
