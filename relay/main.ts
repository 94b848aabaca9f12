/**
 * The relay process: reads config, recovers the spool, starts delivery, listeners and the
 * HTTP endpoint; reloads config on change (relay/reload.ts) and drains on SIGTERM
 * (relay/drain.ts). Each stage lives in its own module; this one only wires them.
 */
import fs from 'node:fs';
import os from 'node:os';
import type http from 'node:http';
import nodeTls from 'node:tls';
import type { Logger } from 'pino';
import { domainOf } from './address.js';
import { loadSigningKeys } from './dkim-keys.js';
import type { RelayConfig } from './config.js';
import { checkSmarthostCredentials } from './delivery/credentials.js';
import { readSigningKeys } from './events/signature.js';
import { readBouncesKey } from './bounces/return-path.js';
import { FleetSuppressions } from './fleet-suppressions.js';
import { linksPortOf, startLinks } from './links/server.js';
import { readLinksKey } from './links/token.js';
import { unsubscribeOwners } from './links/unsubscribe.js';
import type { RelayEvent } from './events/event.js';
import { ErrorCodes, MailfleetError } from './errors.js';
import { portOf, startHttp } from './http.js';
import { drain } from './drain.js';
import type { IntakePolicy } from './intake/deps.js';
import { ListenerSet } from './listeners.js';
import { createLogger } from './log.js';
import { readToken, receiveHandoff } from './handoff.js';
import { receiveEvents } from './events/handoff.js';
import { exposition, IntakeMetrics } from './metrics.js';
import { WorkerQueue, type QueueHandle } from './queue/client.js';
import type { PermanentFailure } from './queue/manager.js';
import { watchConfig } from './reload.js';
import type { QueueStats } from './queue/scheduler.js';
import { SpoolIntake, SpoolLayout } from './spool/spool.js';
import { lockSpool } from './spool/lock.js';
import { SuppressionList, suppressionJson, type HardBounceCandidate } from './suppression.js';
import { UserStore } from './users.js';

export interface RelayOptions {
  config: RelayConfig;
  /** Watched for changes when given (a ConfigMap mount). */
  configFile?: string;
  log?: Logger;
  /** Where the queue runs: a worker thread (the command) or this thread (tests, libraries). */
  queue?: 'worker' | 'inline';
}

export interface RunningRelay {
  config: () => RelayConfig;
  ports: Record<string, number>;
  httpPort: number;
  /** The links endpoint's port, when `links` is configured. */
  linksPort?: number;
  queue: QueueHandle;
  metrics: IntakeMetrics;
  /** The whole /metrics exposition (intake and queue). */
  metricsText(): Promise<string>;
  queueStats(): Promise<QueueStats>;
  /** The spool's writer side (this thread's). */
  spool: SpoolIntake;
  suppressions: SuppressionList;
  /** Re-reads the config file now (what a change or SIGHUP triggers). Resolves true when applied. */
  reload(): Promise<boolean>;
  /** Stops accepting, lets sessions finish, delivers until the drain deadline, leaves the spool intact. */
  shutdown(): Promise<void>;
}

function loadPolicy(config: RelayConfig): IntakePolicy {
  let tls: IntakePolicy['tls'];
  if (config.tls) {
    try {
      tls = { cert: fs.readFileSync(config.tls.certFile), key: fs.readFileSync(config.tls.keyFile) };
    } catch (err) {
      throw new MailfleetError(ErrorCodes.TLS_UNREADABLE, `cannot read TLS certificate or key: ${(err as Error).message}`, 'mount the TLS Secret, or fix tls.certFile / tls.keyFile');
    }
    // Used here first: a pair the listeners could not use is refused before they are given it
    // (a reload must not leave them without one).
    try {
      nodeTls.createSecureContext({ cert: tls.cert, key: tls.key });
    } catch (err) {
      throw new MailfleetError(ErrorCodes.TLS_INVALID, `cannot use the TLS certificate ${config.tls.certFile} with the key ${config.tls.keyFile}: ${(err as Error).message}`, 'mount a Secret whose tls.crt and tls.key belong together, or fix tls.certFile / tls.keyFile');
    }
  }
  const users = config.auth ? UserStore.load(config.auth.usersFile) : UserStore.empty();
  // The queue loads the keys to sign; loading them here too stops a start (or refuses a
  // reload) with the name of an unreadable key before any mail is accepted.
  loadSigningKeys(config.senderDomains);
  checkSmarthostCredentials(config.delivery.route);
  for (const w of config.events.webhooks) {
    readSigningKeys(w);
    if (w.caFile && !fs.existsSync(w.caFile)) throw new MailfleetError(ErrorCodes.TLS_UNREADABLE, `cannot read the CA file ${w.caFile} of webhook ${w.name}`, 'mount the CA bundle, or fix events.webhooks[].caFile');
  }
  const bouncesKey = config.bounces ? readBouncesKey(config.bounces.keyFile) : undefined;
  const linksKey = config.links ? readLinksKey(config.links.keyFile) : undefined;
  const caFile = config.delivery.tlsPolicy.caFile;
  if (caFile && !fs.existsSync(caFile)) throw new MailfleetError(ErrorCodes.TLS_UNREADABLE, `cannot read delivery.tlsPolicy.caFile ${caFile}`, 'mount the CA bundle, or fix the path');
  return { config, users, tls, bouncesKey, linksKey, unsubscribe: unsubscribeOwners(config.senderDomains) };
}

export async function startRelay(opts: RelayOptions): Promise<RunningRelay> {
  let policy = loadPolicy(opts.config);
  const log = opts.log ?? createLogger(opts.config.log.level);
  let draining = false;

  // The writer side of the spool (relay/spool/spool.ts): this thread only appends; the queue owns a
  // message once it is handed over, and hears which journal segments the writer let go.
  // (No segment is sealed before the queue exists: nothing is appended before it starts.)
  const late: { queue?: QueueHandle } = {};
  const layout = new SpoolLayout(opts.config.spool.dir);
  const spool = new SpoolIntake(layout, { minFreeBytes: () => policy.config.spool.minFreeBytes, sealed: (seal) => late.queue!.sealed(seal) });
  const { full } = await layout.open();
  // Unhealthy once another process has taken the spool: two relays on one spool deliver twice.
  let spoolTaken = '';
  const lock = await lockSpool(opts.config.spool.dir, {
    waiting: (holder) => log.warn({ event: 'spool_lock_wait', holder }, `the spool is locked by ${holder}: waiting to see whether it is still renewed`),
    tookOver: (stale) => log.warn({ event: 'spool_lock_taken_over', stale }, `took over the spool lock: ${stale}`),
    lost: (holder) => {
      spoolTaken = holder ? `pid ${holder.pid} on ${holder.host} took over the spool lock` : 'the spool lock was removed or replaced';
      log.error({ event: 'spool_lock_lost', holder }, `${spoolTaken}: two relays must not share a spool`);
    },
  });
  if (lock.unlocked) log.warn({ event: 'spool_unlocked', reason: lock.unlocked }, `running without a spool lock: ${lock.unlocked}`);
  // Drain-only until delivery frees room: intake answers 452 and /readyz says why (both read freeBytes).
  if (full) log.warn({ event: 'spool_full', dir: opts.config.spool.dir }, 'the spool volume is full: starting drain-only (no new mail) to deliver what it holds');
  const metrics = new IntakeMetrics();
  metrics.exportReports(opts.config.senderDomains);
  const shared: { fleet?: FleetSuppressions } = {};
  const suppressions = await SuppressionList.open(opts.config.spool.dir, {
    ttl: () => policy.config.suppression.ttl,
    compact: true,
    onError: (err) => log.warn({ err }, 'suppression list: could not read, append to or compact its file'),
    onAdded: (s) => shared.fleet?.share(s),
    onRemoved: (r) => shared.fleet?.shareRemoval(r),
  });
  // The fleet's list: a peer's, merged before any mail is taken.
  const fleet = (shared.fleet = new FleetSuppressions({ list: suppressions, handoff: () => policy.config.handoff, log }));
  // Its own removals go to the peers again: one made with the CLI while this relay was stopped
  // was told to nobody (a peer that has it already takes nothing from it).
  for (const r of suppressions.listRemovals()) fleet.shareRemoval(r);
  await fleet.pull();
  if (suppressions.skipped) log.warn({ event: 'suppressions_skipped', file: suppressions.file, lines: suppressions.skipped }, 'unreadable suppression list lines dropped');
  const onPermanentFailure = (failure: PermanentFailure) => {
    if (!policy.config.suppression.enabled || !suppressions.add(failure)) return;
    metrics.suppressionAdditions.inc();
    log.info({ event: 'suppression_added', senderDomain: domainOf(failure.sender), recipientDomain: domainOf(failure.recipient), statusCode: failure.statusCode }, 'recipient put on the suppression list after a hard bounce');
  };
  const queue: QueueHandle = (late.queue = opts.queue === 'worker' ? new WorkerQueue(opts.config, opts.config.log.level, onPermanentFailure) : new (await import('./queue/inline.js')).InlineQueue(opts.config, log, onPermanentFailure));
  // Recovered here, before any mail is taken; the queue gets what was found like any accepted mail.
  const { segments, entries, ...recovered } = await spool.recover();
  await queue.start({ entries, segments });
  const report = { messages: entries.length, ...recovered };
  log.info({ event: 'recovered', ...report }, 'spool recovered');
  if (report.corrupt.length) log.error({ event: 'corrupt', files: report.corrupt }, `unreadable spool files moved to ${opts.config.spool.dir}/corrupt/`);
  const metricsText = async () => exposition([await metrics.registry.getMetricsAsJSON(), await queue.metrics()]);

  const intakeDeps = { spool, metrics, log, policy: () => policy, accepted: (e: Parameters<QueueHandle['enqueue']>[0]) => queue.enqueue(e), accepting: () => !draining, suppressions, publish: (events: RelayEvent[]) => queue.publish(events) };
  const listeners = new ListenerSet(intakeDeps);
  await listeners.start();

  /** Handoffs from peers being stored now: a stopping relay waits for them before it hands its own spool on. */
  let receiving = 0;
  const httpServer: http.Server = await startHttp({
    address: opts.config.http.address,
    port: opts.config.http.port,
    metrics: metricsText,
    healthy: () => (spoolTaken ? { ok: false, reason: spoolTaken } : { ok: true }),
    handoff: async (req) => {
      receiving++;
      try {
        return await receiveHandoff(req, {
        tokenFile: () => policy.config.handoff.tokenFile,
        accepting: () => !draining,
        spool,
        enqueue: (entry) => queue.enqueue(entry),
        maxBytes: () => policy.config.limits.maxMessageSize + 1024 * 1024,
        minBackoff: () => policy.config.retry.minBackoff,
        log,
        received: () => metrics.handoffMessages.inc({ direction: 'received' }),
        });
      } finally {
        receiving--;
      }
    },
    suppressions: (req) => fleet.serve(req),
    handoffEvents: (req) => receiveEvents(req, { token: () => readToken(policy.config.handoff.tokenFile), accepting: () => !draining, publish: (events) => queue.publish(events), log }),
    admin: {
      tokenFile: () => policy.config.http.adminTokenFile,
      suppressions: (domain) => suppressions.list(domain).map(suppressionJson),
      removeSuppression: async (domain, address) => {
        const removed = await suppressions.remove(address, domain);
        if (removed.length) log.info({ event: 'suppression_removed', senderDomain: domain, recipient: address, by: 'admin endpoint' }, 'recipient removed from the suppression list');
        return removed.map(suppressionJson);
      },
    },
    ready: async () => {
      if (draining) return { ok: false, reason: 'shutting down' };
      const free = await spool.freeBytes();
      if (free < policy.config.spool.minFreeBytes) return { ok: false, reason: `spool has ${free} bytes free, below the floor of ${policy.config.spool.minFreeBytes}` };
      return { ok: true };
    },
  });

  const suppress = (candidate: HardBounceCandidate) => {
    if (policy.config.suppression.enabled && suppressions.add(candidate)) metrics.suppressionAdditions.inc();
  };
  const linksServer = opts.config.links
    ? await startLinks(opts.config.links.address, opts.config.links.port, { key: () => policy.linksKey, hostname: () => policy.config.hostname, pod: os.hostname(), publish: (events) => queue.publish(events), suppress, metrics, log, now: Date.now })
    : undefined;
  if (linksServer) log.info({ event: 'listening', listener: 'links', address: opts.config.links!.address, port: linksPortOf(linksServer) }, 'links endpoint listening (unsubscribe)');

  // Removals by `mailfleet suppressions remove` (another process) take effect within a second.
  suppressions.watch(1000);
  for (const l of listeners.all) log.info({ event: 'listening', listener: l.config.name, address: l.config.address, port: l.port, tls: l.config.tls, auth: l.config.auth }, 'listening');

  const reloader = opts.configFile
    ? watchConfig({
        file: opts.configFile,
        current: () => policy.config,
        apply: async (next) => {
          const running = policy;
          policy = loadPolicy(next);
          try {
            await listeners.apply(policy);
          } catch (err) {
            // Refused (a port another process holds, an address not on this host): back to the
            // running policy, and its listeners (the set is as it was unless the failure came
            // after a replaced listener had let go of its port; then it is bound again).
            policy = running;
            await listeners.apply(running).catch((e: unknown) => log.error({ event: 'listeners_not_restored', error: (e as Error).message }, 'a refused reload could not put every listener back; fix the config and reload'));
            throw err;
          }
          metrics.exportReports(next.senderDomains);
          queue.reconfigure(next);
          if (!opts.log) log.level = next.log.level; // an injected logger belongs to the caller
        },
        log,
        metrics,
      })
    : undefined;

  let shuttingDown: Promise<void> | undefined;
  const shutdown = () =>
    (shuttingDown ??= (async () => {
      draining = true;
      // A reload under way finishes first (its listeners are then drained too); none starts after.
      await reloader?.stop();
      await drain({ config: policy.config, listeners, queue, receiving: () => receiving, spool, suppressions, lock, httpServer, linksServer, shareSuppressions: () => fleet.flush(), metrics, log });
    })());

  return {
    config: () => policy.config,
    get ports() {
      return listeners.ports;
    },
    httpPort: portOf(httpServer),
    linksPort: linksServer && linksPortOf(linksServer),
    queue,
    metrics,
    metricsText: async () => (await metricsText()).text,
    queueStats: () => queue.stats(),
    spool,
    suppressions,
    reload: () => reloader?.reload() ?? Promise.resolve(false),
    shutdown,
  };
}
