/**
 * Every SMTP refusal the relay answers, in one table: its reply code, enhanced status code,
 * the `reason` label it is counted under in `mailfleet_relay_smtp_rejections_total`, when it
 * is sent, and its text. Intake refuses by name, so a reply is worded in one place, and the
 * list in docs/errors.md is generated from here (refusalReference).
 */

/** Why the relay refused something in an SMTP session (the metric's bounded label set). */
export const REJECTION_REASONS = ['auth', 'auth_required', 'tls_required', 'relay_denied', 'sender_denied', 'bad_address', 'size', 'recipients', 'rate', 'connections', 'storage', 'suppressed', 'malformed', 'not_return_path'] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

interface RefusalSpec {
  code: number;
  enhanced: string;
  /** Absent: the reply is written straight to the socket and not counted. */
  reason?: RejectionReason;
  when: string;
  text: (values: never) => string;
}

export const REFUSALS = {
  // Connections (onConnect, and sessions closed to make room or at drain).
  draining: { code: 421, enhanced: '4.3.2', reason: 'connections', when: 'A new connection while the relay drains (it is stopping).', text: () => 'Service shutting down, try another relay' },
  tooManyFromClient: { code: 421, enhanced: '4.7.0', reason: 'connections', when: 'A client address already holds limits.maxConnectionsPerClient sessions.', text: (v: { client: string; limit: number }) => `Too many connections from ${v.client} (limit ${v.limit}), try again later` },
  tooManySessions: { code: 421, enhanced: '4.7.0', reason: 'connections', when: 'The listener holds limits.maxConnections sessions and every one has started (logged in or begun a mail).', text: (v: { limit: number }) => `Too many sessions (limit ${v.limit}), try again later` },
  evicted: { code: 421, enhanced: '4.7.0', reason: 'connections', when: 'Sent to the longest idle session that never started, closed so a newcomer fits in a full listener.', text: () => 'Too many sessions: closing this idle one to make room; connect again when you have mail to send' },
  drainClosing: { code: 421, enhanced: '4.3.2', when: 'Sent to an idle session when the relay drains, and to every session left at the drain deadline.', text: () => 'Service shutting down, closing the session; send again to reconnect' },
  // Written by the engine (relay/intake/smtp/connection.ts) before the greeting, after the server's name.
  tooManySockets: { code: 421, enhanced: '4.7.0', when: "More than limits.maxConnections + 64 sockets at once: refused before the greeting, the reply led by the relay's hostname.", text: () => 'Too many connected clients, try again in a moment' },
  starttlsNotOffered: { code: 502, enhanced: '5.5.1', when: 'STARTTLS on a listener with tls: none.', text: () => 'STARTTLS is not offered on this port' },

  // AUTH.
  authzid: { code: 535, enhanced: '5.7.8', reason: 'auth', when: 'AUTH PLAIN with an authorization identity other than the user name.', text: () => 'Authentication credentials invalid: an authorization identity other than the user name is not accepted' },
  authLockedOut: { code: 454, enhanced: '4.7.0', reason: 'auth', when: 'AUTH from a client address or for a user with too many recent failures (limits.authFailuresPerClient, authFailuresPerUser).', text: () => 'Too many failed logins, try again later' },
  authBusy: { code: 454, enhanced: '4.3.0', reason: 'auth', when: 'AUTH while the queue of password checks (limits.authQueue) is full.', text: () => 'Too many logins at once, try again later' },
  authInvalid: { code: 535, enhanced: '5.7.8', reason: 'auth', when: 'AUTH with an unknown user or a wrong password (the reply does not tell which).', text: () => 'Authentication credentials invalid' },
  authClosing: { code: 421, enhanced: '4.7.0', reason: 'auth', when: "The session's limits.authFailuresPerSession-th failed AUTH: that failure's words, then the session ends.", text: (v: { refused: string; failures: number }) => `${v.refused}; ${v.failures} failed logins, closing the session` },
  tlsRequired: { code: 538, enhanced: '5.7.11', reason: 'tls_required', when: 'AUTH before STARTTLS on a listener that offers STARTTLS (AUTH is not advertised there before it, as Postfix with smtpd_tls_auth_only).', text: () => 'Encryption required: issue STARTTLS before AUTH' },
  authRequired: { code: 530, enhanced: '5.7.0', reason: 'auth_required', when: 'MAIL FROM without AUTH, from outside the trusted networks, on a listener with auth: required.', text: () => 'Authentication required: log in with AUTH before sending' },

  // MAIL FROM.
  senderDenied: { code: 550, enhanced: '5.7.1', reason: 'sender_denied', when: "MAIL FROM with an address outside the user's sender domains, or not one valid mailbox.", text: (v: { address: string; problem: string }) => `Sender <${v.address}> not allowed: ${v.problem}` },
  rateLimited: { code: 451, enhanced: '4.7.1', reason: 'rate', when: 'MAIL FROM by a user who sent limits.messagesPerUserPerMinute messages in the last minute.', text: (v: { user: string; limit: number }) => `Rate limit: user ${v.user} may send ${v.limit} messages per minute, try again later` },
  storageFull: { code: 452, enhanced: '4.3.1', reason: 'storage', when: 'MAIL FROM, or a message while it arrives, when the spool volume would have less free space than spool.minFreeBytes.', text: () => 'Insufficient system storage, try again later' },
  spoolUnavailable: { code: 452, enhanced: '4.3.1', reason: 'storage', when: "MAIL FROM when the spool volume's free space cannot be read.", text: () => 'Spool unavailable, try again later' },

  // RCPT TO.
  relayDenied: { code: 554, enhanced: '5.7.1', reason: 'relay_denied', when: 'RCPT TO without AUTH from outside the trusted networks: the relay is never open.', text: (v: { rcpt: string }) => `<${v.rcpt}>: Relay access denied (authenticate first)` },
  notMailbox: { code: 553, enhanced: '5.1.3', reason: 'bad_address', when: 'RCPT TO an address that is not local-part@domain.tld.', text: (v: { rcpt: string }) => `<${v.rcpt}>: Recipient address must be user@domain` },
  routedAddress: { code: 553, enhanced: '5.1.3', reason: 'bad_address', when: 'RCPT TO a source route, or a local part with %, ! or @ (addresses that pick their own next hop).', text: (v: { rcpt: string }) => `<${v.rcpt}>: Source-routed, percent-hack and UUCP addresses are not accepted` },
  tooManyRecipients: { code: 452, enhanced: '4.5.3', reason: 'recipients', when: 'RCPT TO beyond limits.maxRecipients in one message (a repeated address does not count twice).', text: (v: { limit: number }) => `Too many recipients (limit ${v.limit}): send the others in another message` },
  notReturnPath: { code: 550, enhanced: '5.1.1', reason: 'not_return_path', when: 'RCPT TO on a `bounces` listener an address that is no return path this fleet made (nor fbl@ a return path domain): it takes reports, and relays nothing.', text: (v: { rcpt: string }) => `<${v.rcpt}>: no such return path here; this server takes only bounces and complaints for mail it sent` },
  reportUnreadable: { code: 451, enhanced: '4.3.0', reason: 'storage', when: 'A report to a return path whose events could not be written (the outbox failed): the reporting server tries again.', text: () => 'Could not record the report, try again later' },
  suppressed: { code: 550, enhanced: '5.1.1', reason: 'suppressed', when: "RCPT TO a recipient on the sender domain's suppression list, with suppression.action: refuse.", text: (v: { rcpt: string; why: string }) => `<${v.rcpt}>: ${v.why}; remove with mailfleet suppressions remove` },

  // DATA.
  tooBig: { code: 552, enhanced: '5.3.4', reason: 'size', when: 'A message larger than limits.maxMessageSize: counted and logged with this entry. A SIZE= over the limit at MAIL FROM is refused earlier by the engine in its own words (552 5.3.4 Error: message exceeds fixed maximum message size), not counted.', text: (v: { limit: number }) => `Message too big: the limit is ${v.limit} bytes` },
  headerTooLarge: { code: 552, enhanced: '5.3.4', reason: 'size', when: 'A header section larger than limits.maxHeaderSize (refused, never cut short: the sender policy reads it whole).', text: (v: { limit: number }) => `Message header too large: the limit is ${v.limit} bytes` },
  nul: { code: 554, enhanced: '5.6.0', reason: 'malformed', when: 'A message with a NUL byte.', text: () => 'Message contains NUL characters, which mail may not carry' },
  appFieldInvalid: { code: 550, enhanced: '5.6.0', reason: 'malformed', when: 'An X-Mailfleet-Tags or X-Mailfleet-Metadata field the relay cannot take (docs/events.md): too many tags, metadata that is not a small JSON object of strings.', text: (v: { problem: string }) => v.problem },
  headerSenderDenied: { code: 550, enhanced: '5.7.1', reason: 'sender_denied', when: "From, Sender or a Resent-* field of an authenticated user's message names an address outside the user's sender domains.", text: (v: { field: string; address: string; problem: string }) => `Header ${v.field} <${v.address}> not allowed: ${v.problem}` },
  noFrom: { code: 550, enhanced: '5.7.1', reason: 'sender_denied', when: 'An authenticated user\'s message without a From field.', text: () => 'Message has no From header' },
  storeFailed: { code: 452, enhanced: '4.3.1', reason: 'storage', when: 'The spool could not store a message (the log says why).', text: () => 'Could not store the message, try again later' },
} as const satisfies Record<string, RefusalSpec>;

export type RefusalName = keyof typeof REFUSALS;
type Values<N extends RefusalName> = Parameters<(typeof REFUSALS)[N]['text']>;
/** The refusals counted under a reason: those intake answers through the engine's callbacks. */
export type CountedRefusalName = CountedName;
type CountedName = { [N in RefusalName]: (typeof REFUSALS)[N] extends { reason: RejectionReason } ? N : never }[RefusalName];

/** An SMTP refusal that the engine turns into a reply line. */
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

/** The refusal called `name`, worded with the values its text needs. */
export function refusal<N extends CountedName>(name: N, ...values: Values<N>): SmtpRefusal {
  const r: RefusalSpec = REFUSALS[name];
  return new SmtpRefusal(r.code, r.enhanced, (r.text as (v: unknown) => string)(values[0]), r.reason!);
}

/** The code and the line after it (`4.3.2 Service shutting down, ...`), for replies written straight to the socket. */
export function refusalReply<N extends RefusalName>(name: N, ...values: Values<N>): [code: number, line: string] {
  const r: RefusalSpec = REFUSALS[name];
  return [r.code, `${r.enhanced} ${(r.text as (v: unknown) => string)(values[0])}`];
}

/** A refusal's text with each value shown by its name (`Too many sessions (limit {limit}), ...`): the docs, and the test that no two replies read alike. */
export function refusalTemplate(name: RefusalName): string {
  const placeholders = new Proxy({}, { get: (_, key) => `{${String(key)}}` });
  return (REFUSALS[name].text as (v: unknown) => string)(placeholders);
}

/** The docs' list of every refusal (a section of docs/errors.md). */
export function refusalReference(): string {
  const cell = (s: string) => s.replaceAll('|', '\\|');
  const rows = (Object.keys(REFUSALS) as RefusalName[]).map((name) => {
    const r: RefusalSpec = REFUSALS[name];
    return `| ${r.code} | ${r.enhanced} | ${r.reason ? `\`${r.reason}\`` : 'not counted'} | ${cell(r.when)} | \`${cell(refusalTemplate(name))}\` |`;
  });
  return [
    '# SMTP refusals',
    '',
    "Every refusal the relay itself answers in an SMTP session, from `relay/refusals.ts`. The reason is the `reason` label of `mailfleet_relay_smtp_rejections_total`. Words in braces are filled in per reply. The SMTP engine's own protocol replies (bad syntax, commands out of order, a SIZE over the limit at MAIL FROM, the idle timeout) are not listed and not counted.",
    '',
    '| code | enhanced | reason | when | reply |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}
