/**
 * Turns a failed `mailfleet send` into one paragraph a person can act on: what is wrong and
 * what to do. Pure functions over the error SMTPConnection reported and what the session saw,
 * so every case can be tested without a server.
 */
import type { PeerCertificate } from 'node:tls';
import type SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import { SMARTHOST_AUTH_REASONS, smtpAuthReason, type SmarthostAuthReason } from '../../relay/delivery/smarthost-auth.js';
import { ErrorCodes } from '../../relay/errors.js';

export type SmtpError = SMTPConnection.SMTPError;

export type TlsMode = 'plain' | 'starttls' | 'tls';

/** Codes for failures `mailfleet send` detects itself before sending anything to the server (relay/errors.ts defines them). */
export const SendCheck = {
  AUTH_NEEDS_TLS: ErrorCodes.SEND_AUTH_NEEDS_TLS,
  AUTH_NOT_OFFERED: ErrorCodes.SEND_AUTH_NOT_OFFERED,
  AUTH_NO_COMMON_METHOD: ErrorCodes.SEND_AUTH_NO_COMMON_METHOD,
} as const;

/** What the session had established when it failed. */
export interface SessionFacts {
  host: string;
  port: number;
  mode: TlsMode;
  timeoutSeconds: number;
  from: string;
  /** --user, if given. */
  user: string | undefined;
  /** Whether --oauth2 was given: AUTH XOAUTH2 with an access token. */
  oauth2: boolean;
  /** Whether --ca was given. */
  caGiven: boolean;
  /** Whether the server has said anything yet (its greeting). */
  greeted: boolean;
  /** Capability lines of the latest EHLO reply (without the greeting line), undefined before one. */
  capabilities: string[] | undefined;
  tlsEstablished: boolean;
  authenticated: boolean;
}

/** SASL mechanisms SMTPConnection implements, in the order it prefers them. */
export const SUPPORTED_AUTH = ['PLAIN', 'LOGIN', 'CRAM-MD5'] as const;

type Rule = (err: SmtpError, facts: SessionFacts) => string | undefined;

/** The diagnosis paragraph, without the `diagnosis:` prefix. */
export function diagnose(err: SmtpError, facts: SessionFacts): string {
  for (const rule of RULES) {
    const text = rule(err, facts);
    if (text) return text;
  }
  return `the send failed in an unexpected way (${err.message}). The transcript above shows the last step that worked; start there.`;
}

/** The SASL mechanisms an EHLO reply advertises (`AUTH PLAIN LOGIN` or the old `AUTH=PLAIN`), undefined without AUTH. */
export function advertisedAuth(capabilities: string[] | undefined): string[] | undefined {
  const line = capabilities?.find((c) => /^AUTH[ =]/i.test(c));
  return line?.slice(5).trim().toUpperCase().split(/[\s=]+/).filter(Boolean);
}

export function offersStarttls(capabilities: string[] | undefined): boolean {
  return (capabilities ?? []).some((c) => c.toUpperCase() === 'STARTTLS');
}

function advertisedSize(facts: SessionFacts): string | undefined {
  const line = facts.capabilities?.find((c) => /^SIZE\s+\d+/i.test(c));
  return line ? `${line.split(/\s+/)[1]} bytes` : undefined;
}

function address(facts: SessionFacts): string {
  return `${facts.host}:${facts.port}`;
}

/** `5.7.1` from `550 5.7.1 Relay access denied`. */
function enhancedCode(err: SmtpError): string | undefined {
  return /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b/.exec(err.response ?? '')?.[1];
}

function reply(err: SmtpError): string {
  return JSON.stringify((err.response ?? '').split('\n').pop() ?? '');
}

/** The code of the underlying socket or TLS error; SMTPConnection replaces `code` with its own. */
function systemCode(err: SmtpError): string | undefined {
  return err.originalCode ?? err.code;
}

function ownCheck(err: SmtpError, facts: SessionFacts): string | undefined {
  if (err.code === SendCheck.AUTH_NO_COMMON_METHOD) {
    const offered = advertisedAuth(facts.capabilities)?.join(', ');
    if (facts.oauth2) {
      return `the server offers only AUTH ${offered}, not XOAUTH2: it does not take OAuth 2.0 access tokens on this port. Check --server (Microsoft 365: smtp.office365.com:587, Gmail: smtp.gmail.com:587), or authenticate with --password-file instead of --oauth2.`;
    }
    return `the server offers only AUTH ${offered}, and mailfleet send speaks ${SUPPORTED_AUTH.join(', ')}. Enable one of those on the server for this listener.`;
  }
  if (err.code === SendCheck.AUTH_NEEDS_TLS) {
    const authHidden = advertisedAuth(facts.capabilities) ? '' : ' (this one offers AUTH only after TLS)';
    return `the server offers STARTTLS, so ${facts.oauth2 ? 'the access token' : 'the password'} was not sent in plain text${authHidden}. Add --starttls to encrypt the connection before AUTH.`;
  }
  if (err.code !== SendCheck.AUTH_NOT_OFFERED) return undefined;
  if (!facts.tlsEstablished) {
    return 'the server offers neither AUTH nor STARTTLS on this plain-text port. Use its submission port with --starttls (usually 587) or its implicit-TLS port with --tls (usually 465), or drop --user if this server relays without authentication.';
  }
  return 'the server offers no AUTH on this port even over TLS: this listener does not take authenticated submissions (on a mailfleet relay: `auth: none`). Drop --user, or use the listener that requires AUTH.';
}

function unresolvable(err: SmtpError, facts: SessionFacts): string | undefined {
  if (err.code !== 'EDNS') return undefined;
  return `the host name ${facts.host} does not resolve (${systemCode(err)}). Check its spelling and the DNS this machine uses; inside Kubernetes, use the Service name (e.g. relay.namespace.svc).`;
}

function refused(err: SmtpError, facts: SessionFacts): string | undefined {
  if (systemCode(err) !== 'ECONNREFUSED') return undefined;
  return `nothing is listening on ${address(facts)} (connection refused). Check the host and port, and that the server is running and exposes this port (for a mailfleet relay: kubectl get pods,svc).`;
}

function unreachable(err: SmtpError, facts: SessionFacts): string | undefined {
  const code = systemCode(err);
  if (code !== 'EHOSTUNREACH' && code !== 'ENETUNREACH') return undefined;
  return `there is no network route to ${address(facts)} (${code}). Check the address, and the routing or VPN between this machine and the server.`;
}

function timedOut(err: SmtpError, facts: SessionFacts): string | undefined {
  if (err.code !== 'ETIMEDOUT') return undefined;
  const within = `within ${facts.timeoutSeconds}s`;
  if (err.timeoutType === 'CONNECT_TIMEOUT') {
    return `no answer from ${address(facts)} ${within}: a firewall (security group, NetworkPolicy) silently drops the connection, or the host is wrong. Check the address and that the port is open from this machine.`;
  }
  // The phase is judged from what the session saw: with equal timeouts the idle-socket timer
  // can fire before the greeting or handshake timer that describes the wait better.
  if (facts.mode === 'tls' && !facts.tlsEstablished) {
    return `the TLS handshake did not finish ${within}: the port may not speak TLS at all, or something on the path interferes. Check the port, then the server's logs.`;
  }
  if (!facts.greeted) {
    return `the connection opened but the server sent no greeting ${within}. An implicit-TLS port (usually 465) waits silently for a TLS handshake: retry with --tls. Otherwise the server is overloaded or delays its greeting on purpose (mailfleet: greetingDelay); retry with a larger --timeout.`;
  }
  if (facts.mode === 'starttls' && !facts.tlsEstablished) {
    return `the TLS handshake after STARTTLS did not finish ${within}: the server's TLS setup is broken or overloaded. Check the server's logs.`;
  }
  return `the server stopped answering for ${facts.timeoutSeconds}s in the middle of the session: it is overloaded or stuck. Retry with a larger --timeout and check the server's logs.`;
}

const PLAIN_TEXT_REPLY_TO_TLS = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_UNKNOWN_PROTOCOL', 'ERR_SSL_HTTP_REQUEST']);

function tlsToPlainPort(err: SmtpError, facts: SessionFacts): string | undefined {
  const code = systemCode(err) ?? '';
  if (!PLAIN_TEXT_REPLY_TO_TLS.has(code) && !/wrong version number|packet length too long/i.test(err.message)) return undefined;
  return facts.mode === 'tls'
    ? 'the server answered the TLS handshake in plain text: this port speaks plain SMTP, not implicit TLS. Use --starttls instead of --tls (or no TLS flag to see what the port offers).'
    : 'the server accepted STARTTLS but then did not speak TLS: its TLS setup is broken. Check the server logs.';
}

const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

function certificate(err: SmtpError, facts: SessionFacts): string | undefined {
  const code = systemCode(err) ?? '';
  const testing = '--insecure skips verification for a test (never in production)';
  if (UNTRUSTED.has(code) && facts.caGiven) {
    return `the server's certificate is not signed by the CA in --ca (${code}). Check that the file holds the CA that issued this server's certificate (or its intermediate chain); ${testing}.`;
  }
  if (UNTRUSTED.has(code)) {
    return `the server's certificate is not trusted (${code}): it is self-signed or signed by a private CA. Pass that CA certificate with --ca FILE (PEM); ${testing}.`;
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return `the server's certificate is outside its validity period (${code}). Renew it on the server (or fix a wrong clock, here or there); ${testing}.`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    // Node's hostname check attaches the certificate it rejected.
    const names = (err as SmtpError & { cert?: PeerCertificate }).cert?.subjectaltname;
    return `the server's certificate does not name ${facts.host}${names ? ` (it names ${names})` : ''}. Connect with a name the certificate lists, or reissue the certificate for ${facts.host}; ${testing}.`;
  }
  return undefined;
}

function starttlsRefused(err: SmtpError, facts: SessionFacts): string | undefined {
  if (err.code !== 'ETLS' || err.command !== 'STARTTLS' || !err.responseCode) return undefined;
  if (!offersStarttls(facts.capabilities)) {
    return `the server does not offer STARTTLS on this port (it is not in the EHLO reply) and refused it with ${reply(err)}. Use the implicit-TLS port with --tls, enable TLS on the server (mailfleet: listener \`tls: starttls\` and tls.certFile/keyFile), or drop --starttls to test in plain text.`;
  }
  return `the server advertised STARTTLS but refused it with ${reply(err)}: its TLS setup is broken (certificate or key not loaded?). Check the server's logs.`;
}

/** What to change on `mailfleet send`'s command line, beside the relay's advice for each reason. */
const SEND_TODO: Record<SmarthostAuthReason, string> = {
  basic_auth_disabled: 'With mailfleet send: --oauth2 microsoft --tenant T --client-id ID --client-secret-file F instead of --password-file (docs/providers.md).',
  smtp_auth_disabled: 'Then run mailfleet send again.',
  credentials_rejected: 'Here: --user names the mailbox, --client-id the application.',
  token_client_rejected: 'Here: the secret in --client-secret-file, or the certificate in --certificate-file.',
  token_not_authorized: 'Here: check --tenant, --client-id and --scope.',
  token_endpoint_unreachable: 'Here: check --token-url (or --tenant) and that this machine reaches the endpoint; a private CA goes in --ca.',
  credentials_unreadable: 'Here: check the files given to --client-secret-file, --certificate-file and --private-key-file, or --service-account-file.',
};

/**
 * A failed smarthost authentication: the step that failed and the relay's reason, with what it
 * means and what to do from relay/delivery/smarthost-auth.ts (the relay's metric and docs say the same).
 */
export function explainAuthReason(failedStep: string, reason: SmarthostAuthReason): string {
  const { means, todo } = SMARTHOST_AUTH_REASONS[reason];
  return `${failedStep} failed: ${reason}. ${means} To do: ${todo} ${SEND_TODO[reason]}`;
}

function smarthostAuthRefused(err: SmtpError, facts: SessionFacts): string | undefined {
  if (!err.command?.startsWith('AUTH') || !err.response) return undefined;
  const reason = smtpAuthReason(err.response);
  // A password refused with a plain 535 keeps authFailed's advice, which names the flags to check;
  // other refusals of a token (538, 504) are not about the token either.
  if (reason === 'credentials_rejected' && (!facts.oauth2 || err.responseCode !== 535)) return undefined;
  return explainAuthReason(`the SMTP step ${err.command}`, reason);
}

function authFailed(err: SmtpError, facts: SessionFacts): string | undefined {
  if (!err.command?.startsWith('AUTH')) return undefined;
  const enhanced = enhancedCode(err);
  if (err.responseCode === 535 || enhanced === '5.7.8') {
    return `the server rejected the credentials (${reply(err)}): wrong user name or password. Check --user ${JSON.stringify(facts.user)} and the password file (only its trailing newline is stripped, other spaces count).`;
  }
  if (err.responseCode === 538 || /STARTTLS|TLS|encrypt/i.test(err.response ?? '')) {
    return `the server accepts AUTH only over an encrypted connection (${reply(err)}). Add --starttls (or --tls on an implicit-TLS port).`;
  }
  if (err.responseCode === 504) {
    return `the server does not support the ${err.command} mechanism it advertised (${reply(err)}). Check its AUTH configuration.`;
  }
  return undefined;
}

function authRequired(err: SmtpError, facts: SessionFacts): string | undefined {
  const text = err.response ?? '';
  if (err.responseCode !== 530 && !/authenticat\w* (is )?required/i.test(text)) return undefined;
  if (!facts.user) {
    return `the server requires authentication before it accepts mail (${reply(err)}). Add --user U --password-file F, with --starttls or --tls so the password travels encrypted.`;
  }
  return `the server still asks for authentication after AUTH as ${JSON.stringify(facts.user)} succeeded (${reply(err)}): this account is not allowed to send here. Check its permissions on the server.`;
}

function tooLarge(err: SmtpError, facts: SessionFacts): string | undefined {
  if (err.responseCode !== 552 && enhancedCode(err) !== '5.3.4') return undefined;
  const limit = advertisedSize(facts);
  return `the server refused the message as too large (${reply(err)}${limit ? `; it advertises SIZE ${limit}` : ''}). Send a smaller message or raise the server's limit (mailfleet: limits.maxMessageSize).`;
}

function temporary(err: SmtpError): string | undefined {
  const code = err.responseCode ?? 0;
  if (code < 400 || code > 499) return undefined;
  if (code === 421) {
    return `the server is closing the session (${reply(err)}): it is overloaded, shutting down, or limiting connections from this address. Try again later.`;
  }
  return `the server temporarily refused ${err.command ?? 'the command'} (${reply(err)}): it is throttling this client or its spool is full. Nothing is wrong with the message; try again later, and if it persists check the server's queue, disk space and rate limits (mailfleet: spool.minFreeBytes, limits.messagesPerUserPerMinute).`;
}

function relayDenied(err: SmtpError, facts: SessionFacts): string | undefined {
  if (err.command !== 'RCPT TO' || (enhancedCode(err) !== '5.7.1' && !/relay/i.test(err.response ?? ''))) return undefined;
  const recipient = err.recipient ?? err.rejected?.[0] ?? 'the recipient';
  if (!facts.authenticated) {
    return `the server will not relay to ${recipient} for an unauthenticated client (${reply(err)}). Authenticate with --user and --password-file, or have this client's address added to the server's trusted networks (mailfleet: listeners[].trustedNetworks).`;
  }
  return `the server will not relay to ${recipient} even for ${JSON.stringify(facts.user)} (${reply(err)}): this account may not send to that domain. Check the account's permissions on the server.`;
}

function senderDenied(err: SmtpError, facts: SessionFacts): string | undefined {
  const onMailFrom = err.command === 'MAIL FROM' && (err.responseCode ?? 0) >= 500;
  const afterData = err.command === 'DATA' && (err.responseCode ?? 0) >= 500 && /sender|domain|from/i.test(err.response ?? '');
  if (!onMailFrom && !afterData) return undefined;
  return `the server does not accept mail from ${facts.from} (${reply(err)}). Use a --from address in a domain this server may send for${facts.user ? ` as ${JSON.stringify(facts.user)}` : ''}, or have the domain allowed (mailfleet: senderDomains).`;
}

function greetingRefused(err: SmtpError, facts: SessionFacts): string | undefined {
  // Before any EHLO reply, a refusal on the connection itself can only be the greeting.
  if (err.command !== 'CONN' || !err.responseCode || facts.capabilities) return undefined;
  return `the server refused the session as soon as it started (${reply(err)}): it blocks this client's address or is not accepting mail now. Read the reply text; it usually names the reason.`;
}

function connectionLost(err: SmtpError, facts: SessionFacts): string | undefined {
  const code = systemCode(err);
  if (code !== 'ECONNRESET' && code !== 'EPIPE' && err.code !== 'ECONNECTION' && err.code !== 'ETLS') return undefined;
  // SMTPConnection marks a close during the STARTTLS upgrade as ETLS; with --tls, everything before the handshake is done is the handshake.
  const inHandshake = err.code === 'ETLS' || (facts.mode === 'tls' && !facts.tlsEstablished);
  if (inHandshake) {
    return `the server closed the connection during the TLS handshake: this port probably does not speak ${facts.mode === 'tls' ? 'implicit TLS (try --starttls)' : 'TLS after STARTTLS'}, or it refuses this client's TLS versions and ciphers. Check the server's logs.`;
  }
  return 'the server closed the connection unexpectedly: it may limit connections from this address, or it failed. Check the server\'s logs.';
}

function refusedOtherwise(err: SmtpError): string | undefined {
  if (!err.responseCode) return undefined;
  // SMTPConnection files a reply nothing was waiting for under CONN, which is not a command.
  const what = err.command && err.command !== 'CONN' ? err.command : 'the session';
  return `the server refused ${what} with ${reply(err)}. The reply text usually names the policy that applies.`;
}

const RULES: Rule[] = [
  ownCheck,
  unresolvable,
  refused,
  unreachable,
  timedOut,
  tlsToPlainPort,
  certificate,
  starttlsRefused,
  smarthostAuthRefused,
  authFailed,
  authRequired,
  tooLarge,
  temporary,
  relayDenied,
  senderDenied,
  greetingRefused,
  connectionLost,
  refusedOtherwise,
];
