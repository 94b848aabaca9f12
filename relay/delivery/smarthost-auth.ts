/**
 * Why the smarthost would not let the relay in, from what it or the token endpoint said: one
 * reason per thing a person does differently to fix it. Pure; the metric label
 * (`mailfleet_relay_smarthost_auth_failures_total{reason}`), the deferral's reply, `mailfleet
 * send` and docs/providers.md all read this table. Every reason defers: mail waits for the fix
 * and is never bounced over the relay's own credentials.
 */
import { DeliveryFailure } from './outcome.js';

export const SMARTHOST_AUTH_REASONS = {
  basic_auth_disabled: {
    means: 'The smarthost no longer accepts a user name and password (Microsoft 365: 535 5.7.139 or 550 5.7.30, Basic authentication turned off).',
    todo: 'Switch delivery.route to oauth2 (docs/providers.md, Microsoft 365 after December 2026).',
  },
  smtp_auth_disabled: {
    means: 'SMTP AUTH is turned off for the mailbox or the whole tenant (Microsoft 365: 535 5.7.139 "SmtpClientAuthentication is disabled").',
    todo: 'Enable Authenticated SMTP for the sending mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false).',
  },
  credentials_rejected: {
    means: 'The smarthost refused the credentials or the access token (535 5.7.3, 535 5.7.8).',
    todo: 'Password: check the Secret. OAuth 2.0: the application needs SMTP.SendAsApp with admin consent, an Exchange service principal and FullAccess to the mailbox named in oauth2.user.',
  },
  token_client_rejected: {
    means: 'The token endpoint refused the client: a wrong, expired or revoked client secret, or a certificate it does not know (invalid_client).',
    todo: 'Put a current client secret in the Secret, or upload the certificate to the app registration.',
  },
  token_not_authorized: {
    means: 'The token endpoint knows the client but will not give it this token: consent missing, the scope not granted, domain-wide delegation not set up, or the tenant or client ID wrong.',
    todo: 'Grant admin consent to the permission (SMTP.SendAsApp; Google: https://mail.google.com/ in domain-wide delegation) and check tenant and clientId.',
  },
  token_endpoint_unreachable: {
    means: 'The token endpoint did not answer, or answered something that is not a token (a timeout, a refused connection, a 5xx, not JSON).',
    todo: 'Check egress to the token endpoint (login.microsoftonline.com, oauth2.googleapis.com) and oauth2.tokenUrl; mail waits and is retried.',
  },
  credentials_unreadable: {
    means: 'A file with the OAuth 2.0 client secret, certificate, key or service account key cannot be read or parsed.',
    todo: 'Mount the Secret and check the oauth2 *File paths.',
  },
} as const;

export type SmarthostAuthReason = keyof typeof SMARTHOST_AUTH_REASONS;

/** The smarthost refused AUTH: which reason its reply names. */
export function smtpAuthReason(reply: string): SmarthostAuthReason {
  if (/\b5\.7\.30\b/.test(reply) || /\b5\.7\.139\b.*basic auth/i.test(reply)) return 'basic_auth_disabled';
  if (/\b5\.7\.139\b/.test(reply) && /SmtpClientAuthentication is disabled/i.test(reply)) return 'smtp_auth_disabled';
  if (/\b5\.7\.139\b/.test(reply)) return 'basic_auth_disabled';
  return 'credentials_rejected';
}

/**
 * A token endpoint's error answer (RFC 6749 5.2: `error`, `error_description`; Entra ID adds
 * AADSTS codes to the description): which reason it names.
 */
export function tokenErrorReason(status: number, body: { error?: unknown } | undefined): SmarthostAuthReason {
  const error = typeof body?.error === 'string' ? body.error : undefined;
  if (error === 'invalid_client') return 'token_client_rejected';
  if (error === 'unauthorized_client' || error === 'invalid_grant' || error === 'invalid_scope' || error === 'access_denied' || error === 'invalid_request' || error === 'unsupported_grant_type') return 'token_not_authorized';
  if (status === 401) return 'token_client_rejected';
  if (status >= 400 && status < 500 && error) return 'token_not_authorized';
  return 'token_endpoint_unreachable';
}

/** A smarthost authentication failure: defers the mail, and says which reason for the metric. */
export class SmarthostAuthFailure extends DeliveryFailure {
  constructor(
    readonly reason: SmarthostAuthReason,
    /** What happened, without the advice: for `mailfleet send` and start-up errors. */
    readonly detail: string,
    remoteMta?: string,
  ) {
    super('deferred', '4.7.0', `smarthost authentication failed (${reason}): ${detail}. ${SMARTHOST_AUTH_REASONS[reason].todo}`, remoteMta);
  }
}
