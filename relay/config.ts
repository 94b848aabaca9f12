/**
 * The relay's configuration: one YAML file, validated here. This schema is the contract the
 * operator renders into a ConfigMap, and the source of docs/configuration.md.
 * It is the whole contract in the order a reader of docs/configuration.md meets it, each key
 * with its default and description beside it; the strict-object helper and the smarthost's
 * OAuth 2.0 settings live in modules of their own (config-strict.ts, delivery/oauth2/config.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import YAML from 'yaml';
import { strict } from './config-strict.js';
import { byteSize, duration } from './config-units.js';
import { eventsSchema } from './events/config.js';
import { linksSchema, trackingSchema, unsubscribeSchema } from './links/config.js';
import { smarthostOAuth2Schema } from './delivery/oauth2/config.js';
import { ErrorCodes, MailfleetError } from './errors.js';

export { byteSize, duration } from './config-units.js';

// 0 asks the system for a free port (tests).
const port = z.number().int().min(0).max(65535);
const hostname = z.string().min(1).regex(/^[A-Za-z0-9.:[\]-]+$/, 'must be a host name or IP address');
const domainName = z
  .string()
  .min(1)
  .regex(/^(?!-)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/, 'must be a domain name such as example.com')
  .transform((d) => d.toLowerCase());
const cidr = z.string().regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, 'must be an IP address or CIDR range such as 10.0.0.0/8');

export const listenerSchema = strict({
    name: z.string().regex(/^[a-z0-9-]+$/, 'lower-case letters, digits and dashes').describe('Name used in logs and the `listener` metric label.'),
    address: hostname.default('0.0.0.0').describe('Address to bind.'),
    port: port.describe('Port to bind.'),
    tls: z.enum(['none', 'starttls', 'implicit']).default('starttls').describe('`starttls` offers STARTTLS; `implicit` is TLS from the first byte (port 465); `none` offers no TLS.'),
    auth: z.enum(['required', 'optional', 'none']).default('required').describe('Whether clients must AUTH before MAIL FROM. With `optional`/`none`, only trusted networks may relay without AUTH.'),
    allowInsecureAuth: z.boolean().default(false).describe('Allow AUTH without TLS. Only for development listeners on loopback.'),
    trustedNetworks: z.array(cidr).default([]).describe('Client addresses that may relay without AUTH (like Postfix mynetworks).'),
    greetingDelay: duration.default(0).describe('Pause before the greeting to catch clients that talk too early (postscreen-like). 0 turns it off, right for submission from applications.'),
    role: z
      .enum(['relay', 'bounces'])
      .default('relay')
      .describe("`relay` takes mail to send on; `bounces` takes only the reports (RFC 3464 DSNs, RFC 5965 complaints) that other servers send to the sender domains' return paths (`senderDomains[].returnPath`), from anyone, and relays nothing: the MX of the return path domains. See docs/events.md."),
  })
  .describe('An SMTP listener.');

const dkimKeySchema = strict({
  selector: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9-]*(\.[A-Za-z0-9-]+)*$/, 'a DKIM selector: letters, digits, dashes and dots').describe('Selector: the record is published at `SELECTOR._domainkey.DOMAIN`.'),
  privateKeyFile: z.string().describe('PEM private key (PKCS#8 or PKCS#1): RSA of at least 2048 bits, or Ed25519. The algorithm follows from the key.'),
  active: z.boolean().default(true).describe('Signs new mail. At most one active key per algorithm; inactive keys stay published for rotation.'),
});

export const spfSchema = z.object({
  include: z.array(z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/, 'must be a domain name such as _spf.google.com')).default([]).describe('Extra `include:` mechanisms (other services that send for this domain).'),
  ipRanges: z.array(cidr).default([]).describe('Extra `ip4:`/`ip6:` ranges that send for this domain.'),
  all: z.enum(['~all', '-all']).default('~all').describe('What receivers do with mail from elsewhere: `~all` (soft fail) or `-all` (fail).'),
});

export const dmarcSchema = z.object({
  policy: z.enum(['none', 'quarantine', 'reject']).default('none').describe('`p=`: start with `none` and reports, then tighten.'),
  subdomainPolicy: z.enum(['none', 'quarantine', 'reject']).optional().describe('`sp=`; omitted: the same as policy.'),
  rua: z.array(z.string().regex(/^mailto:\S+@\S+$/, 'a mailto: URI')).default([]).describe('Where aggregate reports go (`mailto:` URIs).'),
  pct: z.number().int().min(0).max(100).default(100).describe('Percentage of failing mail the policy applies to.'),
  alignment: z.enum(['relaxed', 'strict']).default('relaxed').describe('DKIM and SPF alignment (`adkim`, `aspf`).'),
});

const mtaStsPublishSchema = strict({
  mode: z.enum(['enforce', 'testing', 'none']).default('testing').describe('Policy mode published for mail sent TO this domain.'),
  mx: z.array(z.string().min(1)).min(1).describe('MX host names (or `*.example.com` patterns) the policy allows.'),
  maxAge: duration.default(604800).describe('`max_age` of the policy.'),
});

export const senderDomainSchema = strict({
  domain: domainName.describe('A domain that mail may be sent from (envelope sender and header From, or subdomains of it).'),
  users: z.array(z.string()).optional().describe('Authenticated users allowed to send from this domain. Omitted: every authenticated user.'),
  dkim: strict({
      keys: z.array(dkimKeySchema).min(1).describe('Signing keys with their selectors.'),
    })
    .optional()
    .describe('DKIM signing: every message whose header From is this domain (or a subdomain) is signed with each active key.'),
  spf: strict(spfSchema.shape).prefault({}).describe('The SPF record to recommend; the route and `delivery.egressAddresses` add what the relay itself needs.'),
  dmarc: strict(dmarcSchema.shape).prefault({}).describe('The DMARC record to recommend.'),
  mtaSts: mtaStsPublishSchema.optional().describe('Publish an MTA-STS policy for this domain (`_mta-sts` TXT and the policy file).'),
  returnPath: domainName
    .optional()
    .describe("A domain for this sender domain's return path (the envelope sender, VERP: `b+TOKEN@RETURN-PATH`), whose MX is a `bounces` listener: bounces that arrive after the 250, and complaints, become events and suppressions. A subdomain such as bounces.example.com keeps SPF aligned (relaxed). Needs `bounces.keyFile`."),
  unsubscribe: unsubscribeSchema
    .optional()
    .describe('One-click unsubscribe (RFC 8058): the relay adds List-Unsubscribe and List-Unsubscribe-Post to mail from this domain that has none (one recipient per message), signs them, and serves the link (`links`). See docs/unsubscribe.md.'),
  tracking: trackingSchema
    .optional()
    .describe('Open and click tracking: the relay rewrites the links of one-recipient mail from this domain and adds a pixel, before signing, and serves them (`links`). See docs/tracking.md.'),
  tlsRpt: strict({ rua: z.array(z.string().regex(/^(mailto:|https:)\S+$/, 'a mailto: or https: URI')).min(1) }).optional().describe('Publish a TLS-RPT record (`_smtp._tls`).'),
});

const smarthostRoute = strict({
  type: z.literal('smarthost'),
  host: hostname.describe('Upstream host, e.g. email-smtp.eu-west-1.amazonaws.com, smtp.sendgrid.net, smtp.office365.com.'),
  port: port.default(587).describe('Upstream port: 587 (STARTTLS) or 465 (implicit TLS).'),
  tls: z.enum(['starttls', 'implicit', 'none']).default('starttls').describe('`starttls` requires STARTTLS (587), `implicit` is port 465, `none` only for local test peers.'),
  verifyCertificate: z.boolean().default(true).describe("Verify the upstream certificate against Node's CA list plus delivery.tlsPolicy.caFile. Only local test peers turn this off."),
  credentialsFile: z.string().optional().describe('A file with `username:password` on its first line (from a Secret).'),
  usernameFile: z.string().optional().describe('Instead of credentialsFile: a file holding the user name (a Secret key `username`)...'),
  passwordFile: z.string().optional().describe('...and one holding the password (a Secret key `password`), as the operator mounts them.'),
  oauth2: smarthostOAuth2Schema.optional().describe('Authenticate with an OAuth 2.0 access token (XOAUTH2) instead of a password: Microsoft 365, Google Workspace. See docs/providers.md.'),
});

const mxRoute = strict({
  type: z.literal('mx'),
  dnsServers: z.array(z.string()).default([]).describe('DNS servers as IP address or IP:port (names are not accepted: they would need DNS themselves); empty uses the system resolver.'),
  port: port.default(25).describe('Destination port. Only tests change it.'),
  requireTls: z.boolean().default(false).describe('Refuse to deliver over plain text (defer instead).'),
  verifyCertificate: z.boolean().default(false).describe('Verify the MX certificate when STARTTLS is used (opportunistic TLS does not).'),
});

const fileRoute = strict({
  type: z.literal('file'),
  dir: z.string().describe('Directory where each delivered message is written as an .eml file (development).'),
});

export const providerSchema = strict({
  name: z.string().regex(/^[a-z0-9-]+$/, 'lower-case letters, digits and dashes').describe('Provider name: the `provider` metric label and the key that overrides a built-in provider.'),
  mxHosts: z.array(z.string().min(1)).default([]).describe('MX host name suffixes that identify the provider (e.g. `google.com` matches `gmail-smtp-in.l.google.com`). Domains whose MX hosts match share its limits (MX rollup).'),
  maxConnections: z.number().int().min(1).optional().describe('Outbound connections to the provider at once, over all its domains.'),
  messagesPerMinute: z.number().int().min(1).optional().describe('Messages handed to the provider per minute.'),
  messagesPerHour: z.number().int().min(1).optional().describe('Messages handed to the provider per hour.'),
  throttleBackoff: duration.default(300).describe('After a reply that says the provider is throttling (421/451 with "rate", "too many", "throttl"...), pause the whole provider this long.'),
  requireTls: z.boolean().default(false).describe('Deliver to this provider only over TLS with a verified certificate.'),
});

const tlsPolicySchema = strict({
  requireTls: z.array(z.string().min(1)).default([]).describe('Recipient domains or provider names that get mail only over TLS with a verified certificate (defer otherwise).'),
  mtaSts: z.enum(['on', 'off']).default('on').describe('Honour recipient domains\' MTA-STS policies (RFC 8461): in `enforce` mode mail goes only to matching MX hosts over verified TLS; `testing` delivers and logs.'),
  mtaStsPort: port.default(443).describe('HTTPS port of `mta-sts.DOMAIN`. Only tests change it.'),
  caFile: z.string().optional().describe('Extra PEM CA certificates trusted when verifying outbound TLS and MTA-STS policy servers (a private CA).'),
});

export const routeSchema = z.discriminatedUnion('type', [mxRoute, smarthostRoute, fileRoute]);

export const configSchema = strict({
    hostname: z.string().min(1).default('localhost').describe('Name in the greeting, Received headers, Message-IDs and DSNs.'),
    spool: strict({
      dir: z.string().describe('Spool directory (a volume; everything accepted lives here until delivered or bounced).'),
      minFreeBytes: byteSize.default(100 * 1024 * 1024).describe('Below this much free disk the relay answers 452 and reports not ready.'),
    }),
    listeners: z.array(listenerSchema).min(1),
    tls: strict({
        certFile: z.string().describe('PEM certificate chain (e.g. tls.crt of a kubernetes.io/tls Secret).'),
        keyFile: z.string().describe('PEM private key (tls.key).'),
      })
      .optional()
      .describe('Server certificate for STARTTLS and implicit TLS listeners.'),
    auth: strict({ usersFile: z.string().describe('Users file: one `name:scrypt-hash` per line, made with `mailfleet hash-password`.') })
      .optional(),
    senderDomains: z.array(senderDomainSchema).default([]).describe('Domains authenticated users may send from. Empty: any domain.'),
    limits: strict({
        maxMessageSize: byteSize.default(25 * 1024 * 1024).describe('Advertised in EHLO SIZE and enforced.'),
        maxRecipients: z.number().int().min(1).default(100).describe('Recipients per message; more get 452 and the client sends them in another message.'),
        maxConnections: z.number().int().min(1).default(1000).describe('SMTP sessions at once on each listener; more get 421.'),
        maxConnectionsPerClient: z
          .number()
          .int()
          .min(1)
          .default(50)
          .describe("Sessions at once from one client address; more get 421. Postfix's smtpd_client_connection_count_limit: one client cannot take all of maxConnections."),
        messagesPerUserPerMinute: z.number().int().min(1).default(1200).describe('Messages an authenticated user may send per minute; more get 451 4.7.1.'),
        maxHeaderSize: byteSize
          .default(256 * 1024)
          .describe('Largest header section; a larger one (or one that never ends) gets 552 5.3.4. The whole header is read before the sender policy decides, so it is held in memory up to this size.'),
        idleTimeout: duration.default(300).describe('Close a session idle this long (421 4.4.2), once it has logged in or started a mail.'),
        startTimeout: duration
          .default(30)
          .describe('A session must log in (AUTH) or start a mail (MAIL FROM) within this long of connecting, whatever else it sends; otherwise 421 4.4.2. Idle connections cannot hold sessions that applications need.'),
        stressIdleTimeout: duration
          .default(10)
          .describe("The idle timeout while a listener's sessions exceed 80% of maxConnections (Postfix's smtpd_timeout = ${stress?10}{300}): idle sessions make room for new ones."),
        authFailuresPerSession: z.number().int().min(1).default(3).describe('Failed AUTH attempts before the session is closed with 421 4.7.0.'),
        authFailuresPerClient: z.number().int().min(1).default(10).describe('Failed AUTH from one client address within authFailureWindow before its AUTH gets 454 4.7.0 without a password check.'),
        authFailuresPerUser: z
          .number()
          .int()
          .min(1)
          .default(20)
          .describe('Failed AUTH for one user name within authFailureWindow before AUTH as that user gets 454 4.7.0 from addresses it has not logged in from within the window.'),
        authFailureWindow: duration.default(600).describe('How long failed AUTH are counted (from the first one), and so how long a lockout lasts at most.'),
        authFailureDelay: duration.default(1).describe('Every failed AUTH is answered after this pause, so a client that waits for its replies can try only so often (a second per session by default).'),
        authConcurrency: z
          .number()
          .int()
          .min(1)
          .default(1)
          .describe("Password checks (scrypt, ~50 ms of a thread of libuv's pool each) at once; remembered passwords need none. Bounded so that AUTH cannot take the threads the spool writes need."),
        authQueue: z.number().int().min(0).default(32).describe('Password checks waiting for their turn; more get 454 4.3.0 (try again later).'),
      })
      .prefault({}),
    delivery: strict({
        route: routeSchema,
        maxConnections: z.number().int().min(1).default(100).describe('Outbound connections in total.'),
        maxConnectionsPerDestination: z.number().int().min(1).default(20).describe('Outbound connections per destination domain (or to the smarthost).'),
        messagesPerConnection: z.number().int().min(1).default(100).describe('Messages sent over one connection before it is closed.'),
        idleConnectionTime: duration.default(2).describe('How long an idle outbound connection waits for more mail before it closes (like Postfix smtp_connection_cache_time_limit); 0 closes at once.'),
        connectTimeout: duration.default(30).describe('Longest wait for an outbound connection and its greeting.'),
        responseTimeout: duration.default(300).describe('Longest wait for a reply (after DATA Postfix waits 600 s).'),
        egressAddresses: z.array(cidr).default([]).describe('Public addresses mail leaves from (after NAT), for the SPF records `mailfleet records` recommends with the mx route.'),
        providers: z.array(providerSchema).default([]).describe('Traffic shaping per destination provider, merged over the built-in defaults for gmail, microsoft, yahoo and apple (docs/providers.md). Applies to the mx route.'),
        tlsPolicy: tlsPolicySchema.prefault({}).describe('Outbound TLS policy for the mx route: opportunistic STARTTLS unless a rule here or MTA-STS asks for more. caFile applies to the smarthost route too.'),
      }),
    suppression: strict({
        enabled: z.boolean().default(true).describe('Put recipients that hard-bounce (5.1.1, 5.1.2, 5.1.3, 5.1.6, 5.1.10, 5.2.1) on a list per sender domain; policy refusals (5.7.x) and full mailboxes do not count.'),
        ttl: duration.default(30 * 86400).describe('How long an address stays on the list.'),
        action: z.enum(['refuse', 'bounce']).default('refuse').describe('`refuse`: RCPT TO gets 550 5.1.1 saying since when it is suppressed; `bounce`: accept and bounce without an attempt.'),
      })
      .prefault({}),
    retry: strict({
        minBackoff: duration.default(60).describe('Wait before the first retry.'),
        maxBackoff: duration.default(3600).describe('Longest wait between retries (the backoff doubles up to this).'),
        lifetime: duration.default(5 * 86400).describe('After this long in the queue a message bounces.'),
        delayNoticeAfter: duration.default(0).describe('Send one delay notice to the sender after this long; 0 turns it off.'),
      })
      .prefault({}),
    http: strict({
        address: hostname.default('127.0.0.1').describe('Address of the HTTP endpoint (metrics, probes, handoff from peers). Loopback unless set: in Kubernetes the operator sets 0.0.0.0 so Prometheus, the kubelet and peer relays reach it.'),
        port: port.default(9090).describe('Serves /metrics, /healthz, /readyz and, with adminTokenFile, /admin/suppressions.'),
        adminTokenFile: z.string().optional().describe('A file holding the bearer token for the /admin endpoints (suppression list); omitted: no admin endpoints.'),
      })
      .prefault({}),
    shutdown: strict({ drainTimeout: duration.default(25).describe('After SIGTERM, keep delivering this long, then (with handoff) hand the rest to a peer, then exit with what is left intact in the spool.') })
      .prefault({}),
    handoff: strict({
        tokenFile: z.string().optional().describe('Bearer token shared by the relays of one fleet (a Secret the operator makes). With it the relay takes messages from peers (POST /internal/handoff) and hands its own to them when it stops.'),
        peers: z.array(z.string().regex(/^[^\s:]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$/, 'host:port')).default([]).describe('Peer relays as host:port of their HTTP endpoint (a static list).'),
        peerService: z.string().optional().describe('A DNS name whose A/AAAA records are the peers (the fleet\'s headless Service); the pod\'s own address (env POD_IP) is left out.'),
        peerPort: port.default(9090).describe('HTTP port of the peers found through peerService.'),
        window: duration.default(10).describe('Time kept at the end of the drain for handing the remaining messages to peers.'),
      })
      .prefault({}),
    bounces: strict({
        keyFile: z.string().describe('A file (a Secret shared by the fleet) holding the key that signs the return path tokens, at least 32 characters: any relay of the fleet can then read a report without a lookup.'),
        mxHost: hostname.optional().describe("The public host name of the fleet's `bounces` listeners: `mailfleet records` recommends an MX record naming it for each return path."),
      })
      .optional()
      .describe('Return paths and the reports sent to them (needed with `senderDomains[].returnPath` or a `bounces` listener).'),
    links: linksSchema.optional().describe('The public HTTP endpoint of the links the relay puts in mail (`senderDomains[].unsubscribe`).'),
    events: eventsSchema.prefault({}).describe('What became of each message (received, delivered, deferred, bounced...), sent to webhooks: docs/events.md.'),
    log: strict({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info').describe('Log level of the JSON log lines on stdout.') }).prefault({}),
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
    const domains = new Set<string>();
    cfg.senderDomains.forEach((d, i) => {
      if (domains.has(d.domain)) ctx.addIssue({ code: 'custom', path: ['senderDomains', i, 'domain'], message: `sender domain ${d.domain} is listed twice` });
      domains.add(d.domain);
      const selectors = new Set<string>();
      d.dkim?.keys.forEach((k, j) => {
        if (selectors.has(k.selector)) ctx.addIssue({ code: 'custom', path: ['senderDomains', i, 'dkim', 'keys', j, 'selector'], message: `selector ${k.selector} is used twice for ${d.domain}` });
        selectors.add(k.selector);
      });
    });
    const providers = new Set<string>();
    cfg.delivery.providers.forEach((p, i) => {
      if (providers.has(p.name)) ctx.addIssue({ code: 'custom', path: ['delivery', 'providers', i, 'name'], message: `provider ${p.name} is listed twice` });
      providers.add(p.name);
    });
    const route = cfg.delivery.route;
    if (route.type === 'smarthost' && (route.usernameFile === undefined) !== (route.passwordFile === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['delivery', 'route', route.usernameFile ? 'passwordFile' : 'usernameFile'], message: 'usernameFile and passwordFile go together' });
    }
    if (route.type === 'smarthost' && route.credentialsFile && route.usernameFile) {
      ctx.addIssue({ code: 'custom', path: ['delivery', 'route', 'credentialsFile'], message: 'give either credentialsFile or usernameFile and passwordFile, not both' });
    }
    if (route.type === 'smarthost' && route.oauth2 && (route.credentialsFile || route.usernameFile)) {
      ctx.addIssue({ code: 'custom', path: ['delivery', 'route', 'oauth2'], message: 'give either oauth2 or a user name and password (credentialsFile, usernameFile and passwordFile), not both' });
    }
    if (cfg.handoff.tokenFile && cfg.handoff.window >= cfg.shutdown.drainTimeout) {
      ctx.addIssue({ code: 'custom', path: ['handoff', 'window'], message: `the handoff window (${cfg.handoff.window} s) must be shorter than shutdown.drainTimeout (${cfg.shutdown.drainTimeout} s)` });
    }
    cfg.listeners.forEach((l, i) => {
      if (l.role === 'bounces' && l.auth !== 'none') ctx.addIssue({ code: 'custom', path: ['listeners', i, 'auth'], message: `listener "${l.name}" takes bounces from any server: set auth to none` });
      if (l.role === 'bounces' && !cfg.bounces) ctx.addIssue({ code: 'custom', path: ['listeners', i, 'role'], message: `listener "${l.name}" takes bounces, but bounces.keyFile is not set: the return path tokens cannot be checked` });
    });
    cfg.senderDomains.forEach((d, i) => {
      if (d.returnPath && !cfg.bounces) ctx.addIssue({ code: 'custom', path: ['senderDomains', i, 'returnPath'], message: `${d.domain} has a return path, but bounces.keyFile is not set: its tokens cannot be signed` });
      if (d.unsubscribe && !cfg.suppression.enabled) ctx.addIssue({ code: 'custom', path: ['senderDomains', i, 'unsubscribe'], message: `${d.domain} has one-click unsubscribe, but suppression.enabled is false: an unsubscribe could not be honoured` });
      if (d.tracking && !cfg.links) ctx.addIssue({ code: 'custom', path: ['senderDomains', i, 'tracking'], message: `${d.domain} has tracking, but links.keyFile is not set: its links cannot be signed or served` });
      if (d.unsubscribe && !cfg.links) ctx.addIssue({ code: 'custom', path: ['senderDomains', i, 'unsubscribe'], message: `${d.domain} has one-click unsubscribe, but links.keyFile is not set: its links cannot be signed or served` });
      if (d.unsubscribe?.mailto && !d.returnPath) ctx.addIssue({ code: 'custom', path: ['senderDomains', i, 'unsubscribe', 'mailto'], message: `${d.domain} has no returnPath: the mailto address is unsubscribe@ the return path domain, which a bounces listener takes` });
    });
    if (cfg.retry.minBackoff > cfg.retry.maxBackoff) {
      ctx.addIssue({ code: 'custom', path: ['retry', 'minBackoff'], message: 'minBackoff must not exceed maxBackoff' });
    }
  });

export type RelayConfig = z.output<typeof configSchema>;
export type RelayConfigInput = z.input<typeof configSchema>;
export type ListenerConfig = z.output<typeof listenerSchema>;
export type RouteConfig = z.output<typeof routeSchema>;
export type SenderDomainConfig = z.output<typeof senderDomainSchema>;
export type ProviderConfig = z.output<typeof providerSchema>;

/** Formats zod issues as `field.path: problem` lines (an unknown key is named in its path). */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .map((i) => {
      const path = i.code === 'unrecognized_keys' && i.keys.length === 1 ? [...i.path, i.keys[0]!] : i.path;
      return `  ${path.length ? path.join('.') : '(top level)'}: ${i.message}`;
    })
    .join('\n');
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
    senderDomains: cfg.senderDomains.map((d) => (d.dkim ? { ...d, dkim: { ...d.dkim, keys: d.dkim.keys.map((k) => ({ ...k, privateKeyFile: abs(k.privateKeyFile) })) } } : d)),
    http: { ...cfg.http, adminTokenFile: cfg.http.adminTokenFile && abs(cfg.http.adminTokenFile) },
    handoff: { ...cfg.handoff, tokenFile: cfg.handoff.tokenFile && abs(cfg.handoff.tokenFile) },
    bounces: cfg.bounces && { ...cfg.bounces, keyFile: abs(cfg.bounces.keyFile) },
    links: cfg.links && { ...cfg.links, keyFile: abs(cfg.links.keyFile) },
    events: {
      ...cfg.events,
      webhooks: cfg.events.webhooks.map((w) => ({ ...w, caFile: w.caFile && abs(w.caFile), signingKeys: w.signingKeys.map((k) => ({ ...k, secretFile: abs(k.secretFile) })) })),
    },
    delivery: {
      ...cfg.delivery,
      tlsPolicy: { ...cfg.delivery.tlsPolicy, caFile: cfg.delivery.tlsPolicy.caFile && abs(cfg.delivery.tlsPolicy.caFile) },
      route:
        route.type === 'file'
          ? { ...route, dir: abs(route.dir) }
          : route.type === 'smarthost'
            ? {
                ...route,
                credentialsFile: route.credentialsFile && abs(route.credentialsFile),
                usernameFile: route.usernameFile && abs(route.usernameFile),
                passwordFile: route.passwordFile && abs(route.passwordFile),
                oauth2: route.oauth2 && {
                  ...route.oauth2,
                  clientSecretFile: route.oauth2.clientSecretFile && abs(route.oauth2.clientSecretFile),
                  certificateFile: route.oauth2.certificateFile && abs(route.oauth2.certificateFile),
                  privateKeyFile: route.oauth2.privateKeyFile && abs(route.oauth2.privateKeyFile),
                  serviceAccountFile: route.oauth2.serviceAccountFile && abs(route.oauth2.serviceAccountFile),
                },
              }
            : route,
    },
  };
}
