/**
 * Routes say where a recipient's mail goes and open sessions there: `mx` (the recipient
 * domain's MX hosts), `smarthost` (one upstream such as SES, SendGrid, Mailgun, Office 365)
 * and `file` (development: each message becomes an .eml file).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { domainOf } from '../address.js';
import type { RelayConfig, RouteConfig } from '../config.js';
import { ErrorCodes, MailfleetError } from '../errors.js';
import { MtaStsCache, mxAllowed, type MtaStsPolicy } from './mta-sts.js';
import { MxResolver, type MxHost } from './mx.js';
import { classifyMx, OTHER, type Provider } from './providers.js';
import { DeliveryFailure, type RecipientOutcome } from './outcome.js';
import { smarthostCredentials } from './credentials.js';
import { tokenRequest } from './oauth2/grants.js';
import { requestToken } from './oauth2/token-endpoint.js';
import { TokenSource } from './oauth2/token-source.js';
import type { SmtpAuth } from './smtp-client.js';
import { SmtpClient, TlsFailure, type SmtpClientOptions } from './smtp-client.js';

export interface OutboundMessage {
  id: string;
  sender: string;
  recipients: string[];
  size: number;
  /** Declared 8-bit (BODY=8BITMIME): said again to the next hop when it supports 8BITMIME. */
  eightBit?: boolean;
  /** The bytes to send: in memory when the body cache holds them (most mail), else streamed from the spool. */
  body(): Readable | Buffer;
}

export interface RouteSession {
  /** Whether another message may go over this session. */
  readonly usable: boolean;
  deliver(message: OutboundMessage): Promise<RecipientOutcome[]>;
  /** Ends the session; resolves when its connection is closed. */
  close(): Promise<void> | void;
}

export interface Route {
  readonly name: 'mx' | 'smarthost' | 'file';
  /** The queue groups recipients by this key: one connection carries one destination's mail. */
  destinationOf(recipient: string): string;
  /** Opens a session to a destination. Throws DeliveryFailure when none can be had. */
  connect(destination: string): Promise<RouteSession>;
  /**
   * The provider whose limits a destination shares (MX rollup); also the `provider` metric
   * label. Asks anew each time (one DNS query for the mx route): the queue's classifier
   * caches. Rejects when DNS cannot say.
   */
  providerOf(destination: string): Promise<string>;
}

export interface RouteContext {
  heloName: string;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  /** Providers for MX rollup (built-ins merged with config). */
  providers: Provider[];
  /** Outbound TLS policy: require lists and MTA-STS (mx route), extra CAs (mx and smarthost routes). */
  tlsPolicy: RelayConfig['delivery']['tlsPolicy'];
  /** Where the mx route logs MTA-STS warnings (testing-mode violations, failed policy fetches). */
  log: Logger;
}

export function createRoute(config: RouteConfig, ctx: RouteContext): Route {
  switch (config.type) {
    case 'file':
      return new FileRoute(config.dir);
    case 'smarthost':
      return new SmarthostRoute(config, ctx);
    case 'mx':
      return new MxRoute(config, ctx);
  }
}

class SmtpSession implements RouteSession {
  constructor(private readonly client: SmtpClient) {}
  get usable(): boolean {
    return this.client.usable;
  }
  deliver(message: OutboundMessage): Promise<RecipientOutcome[]> {
    return this.client.send(message.sender, message.recipients, message.body(), message.size, message.eightBit);
  }
  close(): Promise<void> {
    return this.client.close();
  }
}

class FileRoute implements Route {
  readonly name = 'file';
  constructor(private readonly dir: string) {}
  destinationOf(): string {
    return 'outbox';
  }
  providerOf(): Promise<string> {
    return Promise.resolve(OTHER);
  }
  async connect(): Promise<RouteSession> {
    await fsp.mkdir(this.dir, { recursive: true });
    const dir = this.dir;
    return {
      usable: true,
      async deliver(message) {
        // Written aside and renamed, so whoever watches the outbox never sees half a message.
        const file = path.join(dir, `${message.id}.eml`);
        const partial = path.join(dir, `.${message.id}.eml.partial`);
        const body = message.body();
        await pipeline(Buffer.isBuffer(body) ? Readable.from([body]) : body, fs.createWriteStream(partial));
        await fsp.rename(partial, file);
        const reply = `250 2.0.0 written to ${file}`;
        return message.recipients.map((address) => ({ address, kind: 'delivered', statusCode: '2.0.0', reply, remoteMta: 'file' }));
      },
      close() {},
    };
  }
}

type SmarthostConfig = Extract<RouteConfig, { type: 'smarthost' }>;

class SmarthostRoute implements Route {
  readonly name = 'smarthost';
  /** CAs trusted for the smarthost's certificate and the token endpoint; undefined: Node's default store. */
  private readonly ca?: string[];
  /** With oauth2: the one access token every connection to the smarthost shares. */
  private readonly tokens?: TokenSource;
  constructor(
    private readonly config: SmarthostConfig,
    private readonly ctx: RouteContext,
  ) {
    this.ca = trustedCas(ctx.tlsPolicy);
    smarthostCredentials(config); // a bad file stops the route from being made, with its code
    const oauth2 = config.oauth2;
    if (oauth2) this.tokens = new TokenSource(async () => requestToken(await tokenRequest(oauth2, Date.now()), { timeoutMs: ctx.responseTimeoutMs, ca: this.ca }), Date.now);
  }
  destinationOf(): string {
    return `smarthost:${this.config.host}:${this.config.port}`;
  }
  providerOf(): Promise<string> {
    return Promise.resolve('smarthost');
  }
  /** Read at each connection: a rotated Secret applies to the next one, without a restart. */
  private auth(): SmtpAuth | undefined {
    const { tokens, config } = this;
    if (tokens && config.oauth2) return { user: config.oauth2.user, token: (refused) => tokens.token(refused) };
    return smarthostCredentials(config);
  }
  async connect(): Promise<RouteSession> {
    const c = this.config;
    const client = await SmtpClient.connect({
      host: c.host,
      port: c.port,
      remoteMta: `${c.host}:${c.port}`,
      heloName: this.ctx.heloName,
      tls: c.tls === 'implicit' ? 'implicit' : c.tls === 'starttls' ? 'require' : 'none',
      verifyCertificate: c.verifyCertificate,
      ca: this.ca,
      auth: this.auth(),
      connectTimeoutMs: this.ctx.connectTimeoutMs,
      responseTimeoutMs: this.ctx.responseTimeoutMs,
    });
    return new SmtpSession(client);
  }
}

/** Node's roots plus delivery.tlsPolicy.caFile (a private CA); undefined without one: Node's default store. */
function trustedCas(tlsPolicy: RouteContext['tlsPolicy']): string[] | undefined {
  if (!tlsPolicy.caFile) return undefined;
  try {
    // A `ca` option replaces Node's bundled roots: add them back so public hosts still verify.
    return [...tls.rootCertificates, fs.readFileSync(tlsPolicy.caFile, 'utf8')];
  } catch (err) {
    throw new MailfleetError(ErrorCodes.TLS_UNREADABLE, `cannot read delivery.tlsPolicy.caFile: ${(err as Error).message}`, 'mount the CA bundle, or fix delivery.tlsPolicy.caFile');
  }
}

type MxConfig = Extract<RouteConfig, { type: 'mx' }>;

class MxRoute implements Route {
  readonly name = 'mx';
  private readonly resolver: MxResolver;
  private readonly log: Pick<Logger, 'warn'>;
  /** CAs trusted for MX hosts and MTA-STS policy hosts; undefined: Node's default store. */
  private readonly ca?: string[];
  private readonly mtaSts?: MtaStsCache;
  constructor(
    private readonly config: MxConfig,
    private readonly ctx: RouteContext,
  ) {
    this.resolver = new MxResolver(config.dnsServers);
    this.log = ctx.log;
    this.ca = trustedCas(ctx.tlsPolicy);
    if (ctx.tlsPolicy.mtaSts === 'on') this.mtaSts = new MtaStsCache({ dns: this.resolver, port: ctx.tlsPolicy.mtaStsPort, ca: this.ca, log: this.log });
  }
  destinationOf(recipient: string): string {
    return domainOf(recipient);
  }
  /** From the domain's MX host names; a DNS failure throws (the queue's classifier caches and asks again: relay/queue/classify.ts). */
  async providerOf(domain: string): Promise<string> {
    return classifyMx(await this.resolver.mxNames(domain), this.ctx.providers)?.name ?? OTHER;
  }
  /**
   * Tries each MX host the domain's MTA-STS policy permits (and each of its addresses) in
   * preference order until one answers, with the TLS the outbound policy asks for
   * (docs/tls.md). TLS that policy requires and cannot have defers: never a bounce.
   */
  async connect(domain: string): Promise<RouteSession> {
    const [hosts, policy] = await Promise.all([this.resolver.resolve(domain), this.mtaSts?.policyFor(domain)]);
    const required = this.requiredTls(domain, hosts, policy);
    let last: DeliveryFailure | undefined;
    for (const host of this.permittedHosts(domain, hosts, policy)) {
      for (const address of host.addresses) {
        const options: SmtpClientOptions = {
          host: address,
          port: this.config.port,
          servername: host.name,
          remoteMta: `${host.name}[${address}]:${this.config.port}`,
          heloName: this.ctx.heloName,
          tls: required ? 'require' : 'opportunistic',
          verifyCertificate: required?.verify ?? this.config.verifyCertificate,
          ca: this.ca,
          connectTimeoutMs: this.ctx.connectTimeoutMs,
          responseTimeoutMs: this.ctx.responseTimeoutMs,
        };
        try {
          const client = await SmtpClient.connect(options);
          if (policy?.mode === 'testing') this.reportTestingViolations(policy, host.name, client, options.remoteMta);
          return new SmtpSession(client);
        } catch (err) {
          if (!(err instanceof DeliveryFailure)) throw err;
          last = required && err instanceof TlsFailure ? new DeliveryFailure('deferred', err.statusCode, `${required.by} requires TLS${required.verify ? ` with a certificate valid for ${host.name}` : ''}: ${err.reply}`, err.remoteMta) : err;
        }
      }
    }
    // Every host refused or could not be reached: the destination is temporarily unavailable.
    throw new DeliveryFailure('deferred', last?.statusCode.startsWith('4') ? last.statusCode : '4.4.1', `no MX host of ${domain} accepted a connection; last: ${last?.reply ?? 'none'}`, last?.remoteMta);
  }

  /** Who insists on TLS for this domain, if anyone, and whether the certificate must verify too. */
  private requiredTls(domain: string, hosts: MxHost[], policy: MtaStsPolicy | undefined): { by: string; verify: boolean } | undefined {
    if (policy?.mode === 'enforce') return { by: `the MTA-STS policy of ${domain} (mode enforce)`, verify: true };
    const listed = this.ctx.tlsPolicy.requireTls.map((entry) => entry.toLowerCase());
    if (listed.includes(domain)) return { by: `delivery.tlsPolicy.requireTls (${domain})`, verify: true };
    const provider = classifyMx(hosts.map((h) => h.name), this.ctx.providers);
    if (provider?.requireTls || (provider && listed.includes(provider.name))) return { by: `the TLS policy of provider ${provider.name}`, verify: true };
    if (this.config.requireTls) return { by: 'the mx route (requireTls)', verify: this.config.verifyCertificate };
    return undefined;
  }

  /** MTA-STS `enforce` sends only to the MX hosts its policy lists; with none listed, mail waits. */
  private permittedHosts(domain: string, hosts: MxHost[], policy: MtaStsPolicy | undefined): MxHost[] {
    if (policy?.mode !== 'enforce') return hosts;
    const listed = hosts.filter((h) => mxAllowed(policy, h.name));
    if (listed.length) return listed;
    throw new DeliveryFailure(
      'deferred',
      '4.7.5',
      `the MTA-STS policy of ${domain} (mode enforce) allows only MX hosts matching ${policy.mx.join(', ')}, and none of its MX hosts (${hosts.map((h) => h.name).join(', ')}) does`,
    );
  }

  /** MTA-STS `testing` delivers as usual and says what `enforce` would have refused. */
  private reportTestingViolations(policy: MtaStsPolicy, mxHost: string, client: SmtpClient, remoteMta: string): void {
    const violations: string[] = [];
    if (!mxAllowed(policy, mxHost)) violations.push(`MX host ${mxHost} does not match the policy's mx (${policy.mx.join(', ')})`);
    const state = client.tlsState;
    if (!state.encrypted) violations.push('the session is not encrypted (no STARTTLS)');
    else if (state.certificateProblem) violations.push(`the certificate is not valid for ${mxHost} (${state.certificateProblem})`);
    if (!violations.length) return;
    this.log.warn(
      { event: 'mta-sts-testing', domain: policy.domain, remoteMta, violations },
      `MTA-STS policy of ${policy.domain} is in mode testing; enforce would have deferred this delivery: ${violations.join('; ')}. Delivering anyway`,
    );
  }
}
