/**
 * Every error a user can meet carries a stable code (search the docs or this file for it)
 * and says what to do about it. SMTP refusal reasons double as the `reason` label of
 * `mailfleet_relay_smtp_rejections_total`.
 */
export const ErrorCodes = {
  CONFIG_INVALID: 'MF_CONFIG_INVALID',
  CONFIG_UNREADABLE: 'MF_CONFIG_UNREADABLE',
  DKIM_KEY_UNREADABLE: 'MF_DKIM_KEY_UNREADABLE',
  DKIM_KEY_INVALID: 'MF_DKIM_KEY_INVALID',
  TLS_UNREADABLE: 'MF_TLS_UNREADABLE',
  USERS_UNREADABLE: 'MF_USERS_UNREADABLE',
  /** The smarthost's credentials file is missing, unreadable or not `username:password`. */
  CREDENTIALS_UNREADABLE: 'MF_CREDENTIALS_UNREADABLE',
  SPOOL_UNAVAILABLE: 'MF_SPOOL_UNAVAILABLE',
  /** Another relay process holds the spool (relay/spool-lock.ts). */
  SPOOL_LOCKED: 'MF_SPOOL_LOCKED',
  LISTEN_FAILED: 'MF_LISTEN_FAILED',
  /**
   * A command needs a relay config and got none: `mailfleet relay` where its development defaults
   * cannot be kept (a read-only /app in the image); `records` or `suppressions` with no --config
   * and no development relay's .mailfleet/relay.yaml.
   */
  CONFIG_REQUIRED: 'MF_CONFIG_REQUIRED',
  /** `mailfleet operator` found no cluster: no KUBECONFIG, no ~/.kube/config, no service account. */
  NO_CLUSTER: 'MF_NO_CLUSTER',
  /** A kubeconfig the operator was given cannot be read or names no cluster. */
  KUBECONFIG_INVALID: 'MF_KUBECONFIG_INVALID',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class MailfleetError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'MailfleetError';
  }

  /** One line for a person: code, problem, what to do. */
  describe(): string {
    return `${this.code}: ${this.message}${this.hint ? `\n  hint: ${this.hint}` : ''}`;
  }
}

/** Why the relay refused something in an SMTP session (a bounded label set). */
export type RejectionReason =
  | 'auth'
  | 'auth_required'
  | 'tls_required'
  | 'relay_denied'
  | 'sender_denied'
  | 'bad_address'
  | 'size'
  | 'recipients'
  | 'rate'
  | 'connections'
  | 'storage'
  | 'suppressed'
  /** A message or address that mail may not carry (NUL bytes). */
  | 'malformed'
  | 'policy';

/** An SMTP refusal that smtp-server turns into a reply line. */
export class SmtpRefusal extends Error {
  constructor(
    readonly responseCode: number,
    readonly enhanced: string,
    readonly text: string,
    readonly reason: RejectionReason,
  ) {
    super(`${enhanced} ${text}`);
    this.name = 'SmtpRefusal';
  }
}
