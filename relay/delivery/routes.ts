/**
 * Routes say where a recipient's mail goes and open sessions there: `mx` (the recipient
 * domain's MX hosts), `smarthost` (one upstream such as SES, SendGrid, Mailgun, Office 365)
 * and `file` (development: each message becomes an .eml file).
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { domainOf } from '../address.js';
import type { RelayConfig, RouteConfig } from '../config.js';
import { MxResolver } from './mx.js';
import { classifyMx, OTHER, type Provider } from './providers.js';
import { DeliveryFailure, type RecipientOutcome } from './outcome.js';
import { SmtpClient, type SmtpClientOptions } from './smtp-client.js';

export interface OutboundMessage {
  id: string;
  sender: string;
  recipients: string[];
  size: number;
  /** Declared 8-bit (BODY=8BITMIME): said again to the next hop when it supports 8BITMIME. */
  eightBit?: boolean;
  body(): Readable;
}

export interface RouteSession {
  /** Whether another message may go over this session. */
  readonly usable: boolean;
  deliver(message: OutboundMessage): Promise<RecipientOutcome[]>;
  close(): void;
}

export interface Route {
  readonly name: 'mx' | 'smarthost' | 'file';
  /** The queue groups recipients by this key: one connection carries one destination's mail. */
  destinationOf(recipient: string): string;
  /** Opens a session to a destination. Throws DeliveryFailure when none can be had. */
  connect(destination: string): Promise<RouteSession>;
  /** The provider whose limits a destination shares (MX rollup); also the `provider` metric label. */
  providerOf(destination: string): Promise<string>;
}

export interface RouteContext {
  heloName: string;
  connectTimeoutMs: number;
  responseTimeoutMs: number;
  /** Providers for MX rollup (built-ins merged with config). */
  providers: Provider[];
  /** Outbound TLS policy of the mx route (require lists, MTA-STS, extra CAs). */
  tlsPolicy: RelayConfig['delivery']['tlsPolicy'];
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
  close(): void {
    this.client.close();
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
        await pipeline(message.body(), fs.createWriteStream(partial));
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
  private credentials?: { user: string; pass: string };
  constructor(
    private readonly config: SmarthostConfig,
    private readonly ctx: RouteContext,
  ) {
    if (config.credentialsFile) this.credentials = readCredentials(config.credentialsFile);
  }
  destinationOf(): string {
    return `smarthost:${this.config.host}:${this.config.port}`;
  }
  providerOf(): Promise<string> {
    return Promise.resolve('smarthost');
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
      auth: this.credentials,
      connectTimeoutMs: this.ctx.connectTimeoutMs,
      responseTimeoutMs: this.ctx.responseTimeoutMs,
    });
    return new SmtpSession(client);
  }
}

/** `username:password` on the first line; the password may contain colons. */
export function readCredentials(file: string): { user: string; pass: string } {
  const line = fs.readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '';
  const colon = line.indexOf(':');
  if (colon <= 0) throw new Error(`${file} must hold "username:password" on its first line`);
  return { user: line.slice(0, colon), pass: line.slice(colon + 1) };
}

type MxConfig = Extract<RouteConfig, { type: 'mx' }>;

class MxRoute implements Route {
  readonly name = 'mx';
  private readonly resolver: MxResolver;
  constructor(
    private readonly config: MxConfig,
    private readonly ctx: RouteContext,
  ) {
    this.resolver = new MxResolver(config.dnsServers);
  }
  destinationOf(recipient: string): string {
    return domainOf(recipient);
  }
  private readonly providerCache = new Map<string, { name: string; expiresAt: number }>();
  /** From the domain's MX host names, cached for a few minutes; `other` when DNS cannot say. */
  async providerOf(domain: string): Promise<string> {
    const cached = this.providerCache.get(domain);
    if (cached && cached.expiresAt > Date.now()) return cached.name;
    let name = OTHER;
    let ttl = 300_000;
    try {
      name = classifyMx(await this.resolver.mxNames(domain), this.ctx.providers)?.name ?? OTHER;
    } catch {
      ttl = 30_000; // a DNS hiccup: ask again soon
    }
    if (this.providerCache.size > 10_000) this.providerCache.clear();
    this.providerCache.set(domain, { name, expiresAt: Date.now() + ttl });
    return name;
  }
  /** Tries each MX host (and each of its addresses) in preference order until one answers. */
  async connect(domain: string): Promise<RouteSession> {
    const hosts = await this.resolver.resolve(domain);
    let last: DeliveryFailure | undefined;
    for (const host of hosts) {
      for (const address of host.addresses) {
        const options: SmtpClientOptions = {
          host: address,
          port: this.config.port,
          servername: host.name,
          remoteMta: `${host.name}[${address}]:${this.config.port}`,
          heloName: this.ctx.heloName,
          tls: this.config.requireTls ? 'require' : 'opportunistic',
          verifyCertificate: this.config.verifyCertificate,
          connectTimeoutMs: this.ctx.connectTimeoutMs,
          responseTimeoutMs: this.ctx.responseTimeoutMs,
        };
        try {
          return new SmtpSession(await SmtpClient.connect(options));
        } catch (err) {
          if (!(err instanceof DeliveryFailure)) throw err;
          last = err;
        }
      }
    }
    // Every host refused or could not be reached: the destination is temporarily unavailable.
    throw new DeliveryFailure('deferred', last?.statusCode.startsWith('4') ? last.statusCode : '4.4.1', `no MX host of ${domain} accepted a connection; last: ${last?.reply ?? 'none'}`, last?.remoteMta);
  }
}
