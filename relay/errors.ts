/**
 * Every error a user can meet carries a stable code (search the docs or this file for it)
 * and says what to do about it. This table is the one place codes are defined: each has what
 * it means and what to do, and docs/errors.md is generated from it (`npm run docs`; a test
 * keeps it true). SMTP refusals have a table of their own (relay/refusals.ts), listed at the
 * end of the same page.
 */
import { refusalReference } from './refusals.js';

export const ERRORS = {
  CONFIG_INVALID: { code: 'MF_CONFIG_INVALID', means: 'The relay config file does not match its schema: a wrong type, a value out of range, or an unknown key. Each problem is named by its field path.', todo: 'Fix the fields named; docs/configuration.md describes each one. An unknown key is often a misspelling: the message suggests the key it resembles.' },
  CONFIG_UNREADABLE: { code: 'MF_CONFIG_UNREADABLE', means: 'The config file cannot be read, or is not valid YAML.', todo: 'Check the path (--config) and the mounted ConfigMap; the message gives the YAML error and its line.' },
  CONFIG_REQUIRED: { code: 'MF_CONFIG_REQUIRED', means: 'A command needs a config file and found none: `mailfleet relay` where its development defaults cannot be kept (a read-only /app in the image), or `records`/`suppressions` without --config and without the .mailfleet/relay.yaml that `npm start` writes.', todo: 'Pass --config FILE, or run `npm start` once in this directory.' },
  DKIM_KEY_UNREADABLE: { code: 'MF_DKIM_KEY_UNREADABLE', means: "A sender domain's DKIM private key file cannot be read.", todo: "Mount the SenderDomain's key Secret, or fix senderDomains[].dkim.keys[].privateKeyFile." },
  DKIM_KEY_INVALID: { code: 'MF_DKIM_KEY_INVALID', means: 'A DKIM key is not usable: not a PEM private key, encrypted with a passphrase, RSA shorter than 2048 bits, an algorithm DKIM does not sign with, or a second active key of one algorithm for a domain.', todo: 'The message says which. The operator makes and rotates keys for a SenderDomain; by hand, `openssl genpkey -algorithm ed25519` or an RSA key of 2048 bits or more.' },
  TLS_UNREADABLE: { code: 'MF_TLS_UNREADABLE', means: "The listeners' certificate or key, delivery.tlsPolicy.caFile, or a webhook's caFile cannot be read.", todo: 'Mount the TLS Secret (cert-manager renews it in place), or fix tls.certFile / tls.keyFile / delivery.tlsPolicy.caFile / events.webhooks[].caFile.' },
  TLS_INVALID: { code: 'MF_TLS_INVALID', means: "The listeners' certificate and key were read but cannot be used: not PEM, cut short, or the key is not the certificate's. At start the relay exits; a reload is refused and the running certificate stays.", todo: 'Mount a Secret whose tls.crt and tls.key belong together (cert-manager writes them as a pair), or fix tls.certFile / tls.keyFile.' },
  USERS_UNREADABLE: { code: 'MF_USERS_UNREADABLE', means: 'The AUTH users file cannot be read, or a line is not `name:$scrypt$...`; the message names the line.', todo: 'Mount the users Secret, or make entries with `mailfleet hash-password`.' },
  CREDENTIALS_UNREADABLE: { code: 'MF_CREDENTIALS_UNREADABLE', means: "The smarthost's credentials file is missing, unreadable, or not `username:password` on its first line; or a file delivery.route.oauth2 names (client secret, certificate and key, service account key) cannot be read or parsed.", todo: 'Mount the smarthost credentials Secret, or fix delivery.route.credentialsFile (or usernameFile and passwordFile, or the oauth2 *File keys).' },
  WEBHOOK_KEY_UNREADABLE: { code: 'MF_WEBHOOK_KEY_UNREADABLE', means: "A webhook's signing key file (events.webhooks[].signingKeys[].secretFile) is missing, unreadable, or shorter than 32 characters.", todo: 'Mount the Secret that holds the key, or make one with `openssl rand -base64 32`; the message names the webhook and the key id.' },
  BOUNCES_KEY_UNREADABLE: { code: 'MF_BOUNCES_KEY_UNREADABLE', means: 'The return path key (bounces.keyFile) is missing, unreadable, or shorter than 32 characters.', todo: "Mount the fleet's return path Secret (every relay of a fleet needs the same key), or make one with `openssl rand -base64 32`." },
  LINKS_KEY_UNREADABLE: { code: 'MF_LINKS_KEY_UNREADABLE', means: 'The key that signs the links in mail (links.keyFile) is missing, unreadable, or shorter than 32 characters.', todo: "Mount the fleet's links key Secret (every relay that may serve a link needs the same key), or make one with `openssl rand -base64 32`." },
  SPOOL_UNAVAILABLE: { code: 'MF_SPOOL_UNAVAILABLE', means: 'The spool directory cannot be created or written (a read-only or missing volume). A full volume is not this error: the relay then starts drain-only.', todo: 'Mount a writable volume at spool.dir, or set spool.dir.' },
  SPOOL_LOCKED: { code: 'MF_SPOOL_LOCKED', means: 'Another relay process holds the spool (its lock names the host and PID). Two relays on one spool would deliver mail twice and lose what one is receiving.', todo: 'Stop the other relay, or give this one a spool.dir of its own. A lock not renewed for 15 s, or held by a dead process of this host, is taken over by itself.' },
  LISTEN_FAILED: { code: 'MF_LISTEN_FAILED', means: 'An SMTP listener cannot bind its address and port: at start the relay exits; a reload is refused and the running listeners stay.', todo: 'Another process holds the port, or the address is not on this host; ports below 1024 need root or CAP_NET_BIND_SERVICE.' },
  NO_CLUSTER: { code: 'MF_NO_CLUSTER', means: '`mailfleet operator` found no cluster: no KUBECONFIG, no ~/.kube/config, no in-cluster service account.', todo: 'Run it in the cluster (the Helm chart), or point KUBECONFIG at one.' },
  KUBECONFIG_INVALID: { code: 'MF_KUBECONFIG_INVALID', means: 'The kubeconfig the operator was given cannot be read or names no cluster.', todo: 'Check KUBECONFIG and its current context.' },
  // `mailfleet send` finds these itself before sending anything; it prints them and exits 1.
  SEND_AUTH_NEEDS_TLS: { code: 'MF_SEND_AUTH_NEEDS_TLS', means: '`mailfleet send --user` on a connection without TLS: the relay offers AUTH only after STARTTLS.', todo: 'Add --starttls (port 587) or --tls (port 465).' },
  SEND_AUTH_NOT_OFFERED: { code: 'MF_SEND_AUTH_NOT_OFFERED', means: '`mailfleet send --user`, but the server offers no AUTH on this port.', todo: 'Use the submission port, or drop --user on a port that trusts your network.' },
  SEND_AUTH_NO_COMMON_METHOD: { code: 'MF_SEND_AUTH_NO_COMMON_METHOD', means: '`mailfleet send --user`, but the server offers no AUTH mechanism the client has (PLAIN, LOGIN, CRAM-MD5; XOAUTH2 with --oauth2).', todo: 'Check the server; the message lists what it offers.' },
} as const satisfies Record<string, { code: `MF_${string}`; means: string; todo: string }>;

/** The codes by name (ErrorCodes.SPOOL_LOCKED is 'MF_SPOOL_LOCKED'). */
export const ErrorCodes = Object.fromEntries(Object.entries(ERRORS).map(([name, e]) => [name, e.code])) as { readonly [K in keyof typeof ERRORS]: (typeof ERRORS)[K]['code'] };

/** docs/errors.md: every code, what it means and what to do. */
export function errorReference(): string {
  const rows = Object.values(ERRORS).map((e) => `## ${e.code}\n\n${e.means}\n\n**What to do.** ${e.todo}\n`);
  return `# Error codes\n\nGenerated from \`relay/errors.ts\` by \`npm run docs\`; do not edit by hand. Every error the relay, the operator and the CLI print starts with its code. A command that stops on one of the first kind exits with status 2; \`mailfleet send\` exits 1 on its own checks (the MF_SEND_ codes).\n\n${rows.join('\n')}\n${refusalReference()}`;
}

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
