/**
 * The relay's configuration: one YAML file, validated here. This schema is the contract the
 * operator renders into a ConfigMap, and the source of docs/configuration.md.
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import YAML from 'yaml';
import { ErrorCodes, MailfleetError } from './errors.js';

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds, given as a number of seconds or a string such as `90s`, `5m`, `1h`, `5d`. */
export const duration = z.union([z.number().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value);
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration: write a number of seconds or e.g. 90s, 5m, 1h, 5d` });
    return z.NEVER;
  }
  return Number(m[1]) * UNITS[m[2]!]!;
});

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3 };

/** Bytes, given as a number or a string such as `25MiB`, `100MB`, `512KiB`. */
export const byteSize = z.union([z.number().int().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size: write bytes or e.g. 512KiB, 25MiB, 1GiB` });
    return z.NEVER;
  }
  return Math.round(Number(m[1]) * unit);
});

// 0 asks the system for a free port (tests).
const port = z.number().int().min(0).max(65535);
const hostname = z.string().min(1).regex(/^[A-Za-z0-9.:[\]-]+$/, 'must be a host name or IP address');
const domainName = z
  .string()
  .min(1)
  .regex(/^(?!-)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/, 'must be a domain name such as example.com')
  .transform((d) => d.toLowerCase());
const cidr = z.string().regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, 'must be an IP address or CIDR range such as 10.0.0.0/8');

export const listenerSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9-]+$/, 'lower-case letters, digits and dashes').describe('Name used in logs and the `listener` metric label.'),
    address: hostname.default('0.0.0.0').describe('Address to bind.'),
    port: port.describe('Port to bind.'),
    tls: z.enum(['none', 'starttls', 'implicit']).default('starttls').describe('`starttls` offers STARTTLS; `implicit` is TLS from the first byte (port 465); `none` offers no TLS.'),
    auth: z.enum(['required', 'optional', 'none']).default('required').describe('Whether clients must AUTH before MAIL FROM. With `optional`/`none`, only trusted networks may relay without AUTH.'),
    allowInsecureAuth: z.boolean().default(false).describe('Allow AUTH without TLS. Only for development listeners on loopback.'),
    trustedNetworks: z.array(cidr).default([]).describe('Client addresses that may relay without AUTH (like Postfix mynetworks).'),
    greetingDelay: duration.default(0).describe('Pause before the greeting to catch clients that talk too early (postscreen-like). 0 turns it off, right for submission from applications.'),
  })
  .describe('An SMTP listener.');

export const senderDomainSchema = z.object({
  domain: domainName.describe('A domain that mail may be sent from (envelope sender and header From, or subdomains of it).'),
  users: z.array(z.string()).optional().describe('Authenticated users allowed to send from this domain. Omitted: every authenticated user.'),
});

const smarthostRoute = z.object({
  type: z.literal('smarthost'),
  host: hostname.describe('Upstream host, e.g. email-smtp.eu-west-1.amazonaws.com, smtp.sendgrid.net, smtp.office365.com.'),
  port: port.default(587).describe('Upstream port: 587 (STARTTLS) or 465 (implicit TLS).'),
  tls: z.enum(['starttls', 'implicit', 'none']).default('starttls').describe('`starttls` requires STARTTLS (587), `implicit` is port 465, `none` only for local test peers.'),
  verifyCertificate: z.boolean().default(true).describe('Verify the upstream certificate against the system CAs. Only local test peers turn this off.'),
  credentialsFile: z.string().optional().describe('A file with `username:password` on its first line (from a Secret).'),
});

const mxRoute = z.object({
  type: z.literal('mx'),
  dnsServers: z.array(z.string()).default([]).describe('DNS servers as host or host:port; empty uses the system resolver.'),
  port: port.default(25).describe('Destination port. Only tests change it.'),
  requireTls: z.boolean().default(false).describe('Refuse to deliver over plain text (defer instead).'),
  verifyCertificate: z.boolean().default(false).describe('Verify the MX certificate when STARTTLS is used (opportunistic TLS does not).'),
});

const fileRoute = z.object({
  type: z.literal('file'),
  dir: z.string().describe('Directory where each delivered message is written as an .eml file (development).'),
});

export const routeSchema = z.discriminatedUnion('type', [mxRoute, smarthostRoute, fileRoute]);

export const configSchema = z
  .object({
    hostname: z.string().min(1).default('localhost').describe('Name in the greeting, Received headers, Message-IDs and DSNs.'),
    spool: z.object({
      dir: z.string().describe('Spool directory (a volume; everything accepted lives here until delivered or bounced).'),
      minFreeBytes: byteSize.default(100 * 1024 * 1024).describe('Below this much free disk the relay answers 452 and reports not ready.'),
    }),
    listeners: z.array(listenerSchema).min(1),
    tls: z
      .object({
        certFile: z.string().describe('PEM certificate chain (e.g. tls.crt of a kubernetes.io/tls Secret).'),
        keyFile: z.string().describe('PEM private key (tls.key).'),
      })
      .optional()
      .describe('Server certificate for STARTTLS and implicit TLS listeners.'),
    auth: z
      .object({ usersFile: z.string().describe('Users file: one `name:scrypt-hash` per line, made with `mailfleet hash-password`.') })
      .optional(),
    senderDomains: z.array(senderDomainSchema).default([]).describe('Domains authenticated users may send from. Empty: any domain.'),
    limits: z
      .object({
        maxMessageSize: byteSize.default(25 * 1024 * 1024).describe('Advertised in EHLO SIZE and enforced.'),
        maxRecipients: z.number().int().min(1).default(100).describe('Recipients per message; more get 452 and the client sends them in another message.'),
        maxConnections: z.number().int().min(1).default(1000).describe('SMTP sessions at once on each listener; more get 421.'),
        maxConnectionsPerClient: z.number().int().min(1).default(100).describe('Sessions at once from one client address; more get 421.'),
        messagesPerUserPerMinute: z.number().int().min(1).default(1200).describe('Messages an authenticated user may send per minute; more get 451 4.7.1.'),
        idleTimeout: duration.default(300).describe('Close a session idle this long.'),
      })
      .prefault({}),
    delivery: z
      .object({
        route: routeSchema,
        maxConnections: z.number().int().min(1).default(100).describe('Outbound connections in total.'),
        maxConnectionsPerDestination: z.number().int().min(1).default(20).describe('Outbound connections per destination domain (or to the smarthost).'),
        messagesPerConnection: z.number().int().min(1).default(100).describe('Messages sent over one connection before it is closed.'),
        idleConnectionTime: duration.default(2).describe('How long an idle outbound connection waits for more mail before it closes (like Postfix smtp_connection_cache_time_limit); 0 closes at once.'),
        connectTimeout: duration.default(30).describe('Longest wait for an outbound connection and its greeting.'),
        responseTimeout: duration.default(300).describe('Longest wait for a reply (after DATA Postfix waits 600 s).'),
      }),
    retry: z
      .object({
        minBackoff: duration.default(60).describe('Wait before the first retry.'),
        maxBackoff: duration.default(3600).describe('Longest wait between retries (the backoff doubles up to this).'),
        lifetime: duration.default(5 * 86400).describe('After this long in the queue a message bounces.'),
        delayNoticeAfter: duration.default(0).describe('Send one delay notice to the sender after this long; 0 turns it off.'),
      })
      .prefault({}),
    http: z
      .object({
        address: hostname.default('0.0.0.0').describe('Address of the HTTP endpoint.'),
        port: port.default(9090).describe('Serves /metrics, /healthz and /readyz.'),
      })
      .prefault({}),
    shutdown: z
      .object({ drainTimeout: duration.default(25).describe('After SIGTERM, keep delivering this long, then exit with the spool intact.') })
      .prefault({}),
    log: z.object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info').describe('Log level of the JSON log lines on stdout.') }).prefault({}),
  })
  .superRefine((cfg, ctx) => {
    cfg.listeners.forEach((l, i) => {
      if (l.tls !== 'none' && !cfg.tls) {
        ctx.addIssue({ code: 'custom', path: ['listeners', i, 'tls'], message: `listener "${l.name}" uses TLS (${l.tls}) but no tls.certFile/tls.keyFile is configured` });
      }
      if (l.auth !== 'none' && !cfg.auth) {
        ctx.addIssue({ code: 'custom', path: ['listeners', i, 'auth'], message: `listener "${l.name}" offers AUTH (${l.auth}) but no auth.usersFile is configured` });
      }
      if (l.tls === 'none' && l.auth === 'required' && !l.allowInsecureAuth) {
        ctx.addIssue({ code: 'custom', path: ['listeners', i, 'auth'], message: `listener "${l.name}" requires AUTH but has no TLS: set tls to starttls, or allowInsecureAuth: true for a loopback development listener` });
      }
    });
    const seen = new Set<string>();
    cfg.listeners.forEach((l, i) => {
      const key = `${l.address}:${l.port}`;
      if (seen.has(key) && l.port !== 0) ctx.addIssue({ code: 'custom', path: ['listeners', i, 'port'], message: `two listeners bind ${key}` });
      seen.add(key);
    });
    if (cfg.retry.minBackoff > cfg.retry.maxBackoff) {
      ctx.addIssue({ code: 'custom', path: ['retry', 'minBackoff'], message: 'minBackoff must not exceed maxBackoff' });
    }
  });

export type RelayConfig = z.output<typeof configSchema>;
export type RelayConfigInput = z.input<typeof configSchema>;
export type ListenerConfig = z.output<typeof listenerSchema>;
export type RouteConfig = z.output<typeof routeSchema>;

/** Formats zod issues as `field.path: problem` lines. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`).join('\n');
}

/** Validates an already-parsed object; relative paths are resolved against `baseDir`. */
export function parseConfig(raw: unknown, baseDir: string, source = 'config'): RelayConfig {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new MailfleetError(
      ErrorCodes.CONFIG_INVALID,
      `${source} is invalid:\n${formatIssues(result.error.issues)}`,
      'fix the fields named above; `docs/configuration.md` describes each one',
    );
  }
  return resolvePaths(result.data, baseDir);
}

/** Reads and validates a YAML config file. Throws MailfleetError with field paths. */
export function loadConfigFile(file: string): RelayConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new MailfleetError(ErrorCodes.CONFIG_UNREADABLE, `cannot read config file ${file}: ${(err as Error).message}`, 'check the path given to --config');
  }
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (err) {
    throw new MailfleetError(ErrorCodes.CONFIG_INVALID, `${file} is not valid YAML: ${(err as Error).message}`);
  }
  return parseConfig(raw, path.dirname(path.resolve(file)), file);
}

function resolvePaths(cfg: RelayConfig, baseDir: string): RelayConfig {
  const abs = (p: string) => path.resolve(baseDir, p);
  const route = cfg.delivery.route;
  return {
    ...cfg,
    spool: { ...cfg.spool, dir: abs(cfg.spool.dir) },
    tls: cfg.tls && { certFile: abs(cfg.tls.certFile), keyFile: abs(cfg.tls.keyFile) },
    auth: cfg.auth && { usersFile: abs(cfg.auth.usersFile) },
    delivery: {
      ...cfg.delivery,
      route:
        route.type === 'file'
          ? { ...route, dir: abs(route.dir) }
          : route.type === 'smarthost' && route.credentialsFile
            ? { ...route, credentialsFile: abs(route.credentialsFile) }
            : route,
    },
  };
}
