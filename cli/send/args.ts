/**
 * `mailfleet send`'s command line: the usage text, the options checked and read (the password
 * and CA files among them) into SendOptions; --oauth2's in oauth2-args.ts, --config's smarthost
 * in config-route.ts. Every mistake is a UsageError, which the command reports with the usage
 * text and exit code 2.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { smarthostFromConfig, TARGET_FLAGS, type SendTarget } from './config-route.js';
import type { TlsMode } from './diagnose.js';
import { OAUTH2_OPTIONS, oauth2FromArgs, type OAuth2Values } from './oauth2-args.js';
import { UsageError } from './usage-error.js';

export { UsageError };

export const SEND_USAGE = `usage: mailfleet send --server HOST:PORT [--starttls | --tls] [--user U --password-file F]
                     [--insecure] [--ca FILE] --from A --to B [--to C ...]
                     [--subject S] [--body TEXT] [--helo NAME] [--timeout SECONDS]
       mailfleet send --server HOST:PORT --starttls --user MAILBOX --oauth2 PROVIDER
                     [--tenant T] [--client-id ID] [--client-secret-file F]
                     [--certificate-file F --private-key-file F] [--service-account-file F]
                     [--token-url URL] [--scope S] --from A --to B ...
       mailfleet send --config FILE --from A --to B ...

Sends one test message and prints the SMTP session as it happens.
  --server HOST:PORT    server to talk to ([::1]:587 for IPv6)
  --starttls            upgrade with STARTTLS and fail if the server does not offer it
  --tls                 TLS from the first byte (implicit TLS, usually port 465)
                        without either, the session stays in plain text
  --user U              authenticate as U (AUTH PLAIN, LOGIN or CRAM-MD5; XOAUTH2 with --oauth2)
  --password-file F     file holding the password (its trailing newline is ignored)
  --ca FILE             trust the CA certificates in FILE (PEM) for the server certificate
                        (and, with --oauth2, for the token endpoint's)
  --insecure            do not verify the server certificate (testing only; never the token endpoint's)
  --helo NAME           name sent with EHLO (default: this host's name)
  --timeout SECONDS     longest wait to set the session up, and then for each reply (default 20)
  --config FILE         instead of --server and the TLS and AUTH options: the smarthost of a relay
                        config's delivery.route (its tls, verifyCertificate, tlsPolicy.caFile, and
                        password files or oauth2), as the relay would use it

OAuth 2.0 (SASL XOAUTH2), as the relay's delivery.route.oauth2 (docs/providers.md): first the
token request (its URL and grant, then how long the token is valid; never the token), then the
SMTP session with AUTH XOAUTH2. A refused token is replaced once by a fresh one, as the relay does.
  --oauth2 PROVIDER     microsoft (Entra ID client credentials), google (service account with
                        domain-wide delegation) or generic (client credentials at --token-url)
  --user MAILBOX        the mailbox to authenticate as (google: the user the service account acts for)
  --tenant T            microsoft: the directory (tenant) ID or domain, e.g. contoso.onmicrosoft.com
  --client-id ID        microsoft and generic: the application (client) ID
  --client-secret-file F
                        file holding the client secret; or instead:
  --certificate-file F --private-key-file F
                        the application's certificate and its key (private_key_jwt)
  --service-account-file F
                        google: the service account's JSON key
  --token-url URL       the token endpoint (microsoft: login.microsoftonline.com/TENANT by default;
                        required for generic; https, except on loopback)
  --scope S             default microsoft: https://outlook.office365.com/.default, google: https://mail.google.com/
Exit status: 0 sent, 1 the server, the token endpoint or the network failed (with a diagnosis),
2 bad arguments.`;

const DEFAULT_TIMEOUT_SECONDS = 20;

export interface SendOptions extends Omit<SendTarget, 'caFile'> {
  /** The CA certificates to trust (PEM), read from --ca or the config's caFile. */
  ca: string | undefined;
  from: string;
  to: string[];
  subject: string;
  body: string;
  helo: string | undefined;
  timeoutSeconds: number;
}

export async function parseSendArgs(argv: string[]): Promise<SendOptions> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        server: { type: 'string' },
        starttls: { type: 'boolean', default: false },
        tls: { type: 'boolean', default: false },
        user: { type: 'string' },
        'password-file': { type: 'string' },
        insecure: { type: 'boolean', default: false },
        ca: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string', multiple: true },
        subject: { type: 'string', default: 'mailfleet test message' },
        body: { type: 'string' },
        helo: { type: 'string' },
        timeout: { type: 'string' },
        config: { type: 'string' },
        ...OAUTH2_OPTIONS,
      },
    }));
  } catch (err) {
    // parseArgs names the offending option well; only its error type needs changing.
    throw new UsageError((err as Error).message);
  }
  if (!values.server && !values.config) throw new UsageError('--server HOST:PORT is required (or --config FILE: the smarthost of a relay config)');
  if (!values.from) throw new UsageError('--from is required');
  if (!values.to?.length) throw new UsageError('at least one --to is required');
  const target = values.config ? targetFromConfig(values.config, values) : await targetFromFlags(values);
  return {
    ...target,
    ca: target.caFile ? await readCa(values.config ? 'delivery.tlsPolicy.caFile' : '--ca', target.caFile) : undefined,
    from: values.from,
    to: values.to,
    subject: values.subject,
    body: values.body ?? `This is a test message sent by mailfleet send to ${target.host}:${target.port} at ${new Date().toISOString()}.`,
    helo: values.helo,
    timeoutSeconds: parseTimeout(values.timeout),
  };
}

type TargetValues = OAuth2Values & { server?: string; starttls: boolean; tls: boolean; insecure: boolean; ca?: string };

function targetFromConfig(file: string, values: TargetValues): SendTarget {
  const given = [...TARGET_FLAGS, ...Object.keys(OAUTH2_OPTIONS)].filter((flag) => {
    const value = values[flag as keyof TargetValues];
    return value !== undefined && value !== false;
  });
  if (given.length) throw new UsageError(`--config takes the smarthost, its TLS and its credentials from the relay config: drop ${given.map((f) => `--${f}`).join(', ')}`);
  return smarthostFromConfig(file);
}

async function targetFromFlags(values: TargetValues): Promise<SendTarget> {
  if (values.starttls && values.tls) throw new UsageError('use either --starttls or --tls, not both');
  const mode: TlsMode = values.tls ? 'tls' : values.starttls ? 'starttls' : 'plain';
  if (mode === 'plain' && (values.insecure || values.ca)) {
    throw new UsageError('--insecure and --ca only apply to TLS: add --starttls or --tls');
  }
  const oauth2 = oauth2FromArgs(values);
  if (!oauth2 && Boolean(values.user) !== Boolean(values['password-file'])) {
    throw new UsageError('--user and --password-file go together (the password is read from a file to keep it out of shell history and ps); for an access token, --user with --oauth2');
  }
  const { host, port } = parseServer(values.server!);
  return {
    host,
    port,
    mode,
    user: values.user,
    password: values['password-file'] ? await readPassword(values['password-file']) : undefined,
    oauth2,
    insecure: values.insecure,
    caFile: values.ca,
  };
}

function parseServer(server: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(server);
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535) {
    throw new UsageError(`--server must be HOST:PORT, e.g. smtp.example.com:587 or [::1]:2525 (got ${JSON.stringify(server)})`);
  }
  return { host: (m[1] ?? m[2])!, port };
}

function parseTimeout(value: string | undefined): number {
  if (value === undefined) return DEFAULT_TIMEOUT_SECONDS;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`--timeout must be a positive number of seconds (got ${JSON.stringify(value)})`);
  return seconds;
}

async function readArgFile(flag: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new UsageError(`cannot read ${flag} ${file}: ${why}`);
  }
}

/** `what`: the flag or config key that named the file, for the error. */
async function readCa(what: string, file: string): Promise<string> {
  const pem = await readArgFile(what, file);
  // Node ignores a CA it cannot parse, which would later look like an untrusted server certificate.
  try {
    new X509Certificate(pem);
  } catch {
    throw new UsageError(`${what} ${file} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)`);
  }
  return pem;
}

async function readPassword(file: string): Promise<string> {
  // Only the line ending an editor or `echo` adds is dropped: other whitespace may be part of the password.
  const password = (await readArgFile('--password-file', file)).replace(/\r?\n$/, '');
  if (!password) throw new UsageError(`--password-file ${file} is empty`);
  return password;
}
