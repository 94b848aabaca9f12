/**
 * One webhook: reads its place in the outbox, POSTs the events as one signed JSON batch, and
 * moves its place on only when the receiver answered 2xx. One batch in flight at a time, so a
 * receiver sees the events of one relay in order; what arrives while a batch is out goes in
 * the next (the batching of a group commit). A failure is retried after a backoff that doubles
 * from a second to maxBackoff, for as long as the outbox keeps the events.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { WebhookConfig } from './config.js';
import { eventDomain, EVENT_SCHEMA_VERSION, type RelayEvent } from './event.js';
import type { EventMetrics } from './metrics.js';
import type { EventOutbox } from './outbox.js';
import { signatureHeader, SIGNATURE_HEADER, type SigningKey } from './signature.js';

export type WebhookResult = 'ok' | 'http_error' | 'timeout' | 'unreachable';

/** How one POST ended. */
export interface PostOutcome {
  result: WebhookResult;
  detail: string;
}

/** Does this webhook take events of this sender domain? Its own domains and their subdomains; none listed: all. */
export function takesDomain(domains: readonly string[] | undefined, domain: string): boolean {
  if (!domains) return true;
  const d = domain.toLowerCase();
  return domains.some((w) => d === w.toLowerCase() || d.endsWith(`.${w.toLowerCase()}`));
}

/** The wait before the next attempt after `failures` failures in a row: 1 s doubling to maxBackoff, with up to 20% jitter. */
export function backoffMs(failures: number, maxBackoffSeconds: number, jitter: number): number {
  const base = Math.min(maxBackoffSeconds, 2 ** Math.max(0, failures - 1)) * 1000;
  return Math.round(base * (1 - 0.2 * jitter));
}

const MAX_ANSWER_BYTES = 64 * 1024;
/** How long new events wait for more before an idle webhook sends them. */
export const LINGER_MS = 250;

export interface WebhookDeps {
  outbox: EventOutbox;
  metrics: EventMetrics;
  log: Logger;
  now: () => number;
  userAgent: string;
}

export class WebhookSender {
  private wakeUp: (() => void) | undefined;
  private stopping = false;
  /** Past the stop's deadline: no further batch. */
  private halted = false;
  private running: Promise<void> | undefined;
  private failures = 0;
  /** The time of the oldest event the receiver has not taken (while a batch is out or waiting). */
  private oldestPending: number | undefined;
  private readonly agent: http.Agent;

  constructor(
    private cfg: WebhookConfig,
    private keys: SigningKey[],
    private readonly deps: WebhookDeps,
  ) {
    const url = new URL(cfg.url);
    const ca = cfg.caFile ? [fs.readFileSync(cfg.caFile, 'utf8')] : undefined;
    // A CA given replaces Node's list; the receiver may have a public certificate as well.
    this.agent = url.protocol === 'https:' ? new https.Agent({ keepAlive: true, maxSockets: 1, ca: ca && [...tls.rootCertificates, ...ca], minVersion: 'TLSv1.2' }) : new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  get name(): string {
    return this.cfg.name;
  }

  get config(): Readonly<WebhookConfig> {
    return this.cfg;
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** New events are in the outbox. */
  wake(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  /** New keys or limits (config reload); the URL and the name are the webhook's identity and never change here. */
  update(config: WebhookConfig, keys: SigningKey[]): void {
    this.cfg = config;
    this.keys = keys;
  }

  /** Seconds the oldest event not yet taken has waited (0: none waiting). */
  oldestAgeSeconds(now: number): number {
    return this.oldestPending === undefined ? 0 : Math.max(0, (now - this.oldestPending) / 1000);
  }

  /** Sends what it can until the deadline, then stops; what is left stays in the outbox. */
  async stop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    this.wake(); // an idle loop finds the outbox empty and ends; one in its backoff ends now
    const left = Math.max(0, deadlineMs - this.deps.now());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise((r) => (timer = setTimeout(r, left)))]);
    clearTimeout(timer);
    this.halted = true;
    this.agent.destroy();
  }

  private async loop(): Promise<void> {
    const { outbox, metrics, log } = this.deps;
    while (!this.halted) {
      const batch = await outbox.read(this.cfg.name, this.cfg.batchSize, (e) => this.wants(e)).catch((err: Error) => {
        log.error({ err, webhook: this.cfg.name }, 'could not read the events outbox');
        return undefined;
      });
      if (!batch) {
        this.oldestPending = undefined;
        if (this.stopping) return;
        await new Promise<void>((r) => (this.wakeUp = r));
        // Let a batch gather (Kafka's linger.ms): a POST, a read and a cursor write per event
        // or two doubled the queue thread's CPU per message under load.
        if (!this.stopping) await new Promise((r) => setTimeout(r, LINGER_MS));
        continue;
      }
      if (batch.unreadable) log.warn({ event: 'events_unreadable', webhook: this.cfg.name, lines: batch.unreadable }, 'skipped outbox lines that hold no event (torn by a crash)');
      if (!batch.events.length) {
        outbox.ack(this.cfg.name, batch.end);
        continue;
      }
      this.oldestPending = Date.parse(batch.events[0]!.time);
      const outcome = await this.post(batch.events);
      if (this.halted) return;
      metrics.requests.inc({ webhook: this.cfg.name, result: outcome.result });
      if (outcome.result === 'ok') {
        outbox.ack(this.cfg.name, batch.end);
        metrics.sent.inc({ webhook: this.cfg.name }, batch.events.length);
        if (this.failures) log.info({ event: 'webhook_recovered', webhook: this.cfg.name, failures: this.failures }, `webhook ${this.cfg.name} takes events again`);
        this.failures = 0;
        continue;
      }
      this.failures++;
      const waitMs = backoffMs(this.failures, this.cfg.maxBackoff, Math.random());
      // The first failure, then every tenth: a receiver down for a day does not fill the log.
      if (this.failures === 1 || this.failures % 10 === 0) {
        log.warn({ event: 'webhook_failed', webhook: this.cfg.name, result: outcome.result, detail: outcome.detail, failures: this.failures, events: batch.events.length, retryInMs: waitMs }, `webhook ${this.cfg.name}: ${outcome.detail}; the batch is sent again`);
      }
      if (this.stopping) return;
      // New events do not cut the backoff short; a stop does.
      await new Promise<void>((r) => {
        const timer = setTimeout(r, waitMs);
        const onWake = () => {
          if (!this.stopping) return void (this.wakeUp = onWake);
          clearTimeout(timer);
          r();
        };
        this.wakeUp = onWake;
      });
      if (this.stopping) return;
    }
  }

  private wants(e: RelayEvent): boolean {
    return (!this.cfg.types || this.cfg.types.includes(e.type)) && takesDomain(this.cfg.senderDomains, eventDomain(e));
  }

  private post(events: RelayEvent[]): Promise<PostOutcome> {
    const body = JSON.stringify({ version: EVENT_SCHEMA_VERSION, events });
    const timestamp = Math.floor(this.deps.now() / 1000);
    const url = new URL(this.cfg.url);
    const timeoutMs = this.cfg.timeout * 1000;
    return new Promise((resolve) => {
      let settled = false;
      const done = (o: PostOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(o);
      };
      const request = (url.protocol === 'https:' ? https : http).request(url, {
        method: 'POST',
        agent: this.agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'user-agent': this.deps.userAgent,
          [SIGNATURE_HEADER]: signatureHeader(body, timestamp, this.keys),
        },
      });
      const timer = setTimeout(() => {
        done({ result: 'timeout', detail: `no answer within ${this.cfg.timeout} s` });
        request.destroy();
      }, timeoutMs);
      request.on('response', (res) => {
        let size = 0;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_ANSWER_BYTES) chunks.push(c);
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) done({ result: 'ok', detail: `${status}` });
          else done({ result: 'http_error', detail: `answered ${status}: ${Buffer.concat(chunks).toString('utf8').split('\n')[0]!.slice(0, 200)}` });
        });
        res.on('error', (err) => done({ result: 'unreachable', detail: err.message }));
      });
      request.on('error', (err: NodeJS.ErrnoException) => done({ result: 'unreachable', detail: `${url.origin}: ${err.code && !err.message.includes(err.code) ? `${err.code} ` : ''}${err.message}` }));
      request.end(body);
    });
  }
}
