/**
 * The relay process: reads config, recovers the spool, starts delivery, listeners and the
 * HTTP endpoint, reloads config on change, and drains on SIGTERM. Each stage lives in its
 * own module; this one only wires them and owns the process lifecycle.
 */
import fs from 'node:fs';
import type http from 'node:http';
import type { Logger } from 'pino';
import { domainOf } from './address.js';
import { loadConfigFile, type ListenerConfig, type RelayConfig } from './config.js';
import { DkimSigner } from './dkim.js';
import { smarthostCredentials } from './delivery/routes.js';
import { ErrorCodes, MailfleetError } from './errors.js';
import { portOf, startHttp } from './http.js';
import { createListeners, SmtpListener, type IntakePolicy } from './intake.js';
import { createLogger } from './log.js';
import { findPeers, handOffSpool, readToken, receiveHandoff } from './handoff.js';
import { exposition, IntakeMetrics } from './metrics.js';
import { InlineQueue, WorkerQueue, type QueueHandle } from './queue-handle.js';
import type { PermanentFailure } from './queue.js';
import type { QueueStats } from './scheduler.js';
import { Spool } from './spool.js';
import { lockSpool } from './spool-lock.js';
import { SuppressionList, suppressionJson } from './suppression.js';
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
  queue: QueueHandle;
  metrics: IntakeMetrics;
  /** The whole /metrics exposition (intake and queue). */
  metricsText(): Promise<string>;
  queueStats(): Promise<QueueStats>;
  spool: Spool;
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
  }
  const users = config.auth ? UserStore.load(config.auth.usersFile) : UserStore.empty();
  // The queue loads the keys to sign; loading them here too stops a start (or refuses a
  // reload) with the name of an unreadable key before any mail is accepted.
  DkimSigner.fromConfig(config.senderDomains);
  smarthostCredentials(config.delivery.route);
  const caFile = config.delivery.tlsPolicy.caFile;
  if (caFile && !fs.existsSync(caFile)) throw new MailfleetError(ErrorCodes.TLS_UNREADABLE, `cannot read delivery.tlsPolicy.caFile ${caFile}`, 'mount the CA bundle, or fix the path');
  return { config, users, tls };
}

const listenerKey = (l: ListenerConfig) => JSON.stringify(l);

export async function startRelay(opts: RelayOptions): Promise<RunningRelay> {
  let policy = loadPolicy(opts.config);
  const log = opts.log ?? createLogger(opts.config.log.level);
  let draining = false;

  const spool = new Spool(opts.config.spool.dir, { minFreeBytes: () => policy.config.spool.minFreeBytes });
  const { full } = await spool.open();
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
  const suppressions = await SuppressionList.open(opts.config.spool.dir, {
    ttl: () => policy.config.suppression.ttl,
    compact: true,
    onError: (err) => log.warn({ err }, 'suppression list: could not read, append to or compact its file'),
  });
  if (suppressions.skipped) log.warn({ event: 'suppressions_skipped', file: suppressions.file, lines: suppressions.skipped }, 'unreadable suppression list lines dropped');
  const onPermanentFailure = (failure: PermanentFailure) => {
    if (!policy.config.suppression.enabled || !suppressions.add(failure)) return;
    metrics.suppressionAdditions.inc();
    log.info({ event: 'suppression_added', senderDomain: domainOf(failure.sender), recipientDomain: domainOf(failure.recipient), statusCode: failure.statusCode }, 'recipient put on the suppression list after a hard bounce');
  };
  const queue: QueueHandle =
    opts.queue === 'worker'
      ? new WorkerQueue(opts.config, opts.config.log.level, (location, id) => spool.journalDone(location, id), onPermanentFailure)
      : new InlineQueue(opts.config, log, spool, onPermanentFailure);
  const report = await queue.start();
  // This thread writes the journal: it deletes each old segment once the queue (in its worker)
  // is done with it. (Inline, the queue recovered with this very spool.)
  const { journalLive, ...recovered } = report;
  if (opts.queue === 'worker') spool.adoptJournal(journalLive);
  log.info({ event: 'recovered', ...recovered }, 'spool recovered');
  if (report.corrupt.length) log.error({ event: 'corrupt', files: report.corrupt }, `unreadable spool files moved to ${opts.config.spool.dir}/corrupt/`);
  const metricsText = async () => exposition([await metrics.registry.getMetricsAsJSON(), await queue.metrics()]);

  const intakeDeps = { spool, metrics, log, policy: () => policy, accepted: (e: Parameters<QueueHandle['enqueue']>[0]) => queue.enqueue(e), accepting: () => !draining, suppressions };
  let listeners: SmtpListener[] = createListeners(intakeDeps);
  try {
    for (const l of listeners) await l.listen();
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()));
    throw new MailfleetError(ErrorCodes.LISTEN_FAILED, `cannot listen: ${(err as Error).message}`, 'another process holds the port, or the address is not on this host');
  }
  const ports = () => Object.fromEntries(listeners.map((l) => [l.config.name, l.port]));

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

  // Removals by `mailfleet suppressions remove` (another process) take effect within a second.
  suppressions.watch(1000);
  for (const l of listeners) log.info({ event: 'listening', listener: l.config.name, address: l.config.address, port: l.port, tls: l.config.tls, auth: l.config.auth }, 'listening');

  let reloading: Promise<boolean> = Promise.resolve(true);
  const reload = async (): Promise<boolean> => {
    if (!opts.configFile) return false;
    try {
      const next = loadConfigFile(opts.configFile);
      const nextPolicy = loadPolicy(next);
      policy = nextPolicy;
      // Listeners whose settings changed are replaced; their open sessions finish on the old server.
      const keep = new Map(listeners.map((l) => [listenerKey(l.config), l]));
      const wanted = next.listeners.map(listenerKey);
      const retired = listeners.filter((l) => !wanted.includes(listenerKey(l.config)));
      // Retired listeners stop listening now; their sessions may finish their transaction.
      await Promise.all(retired.map((l) => l.drain(Date.now() + 60_000)));
      const fresh = createListeners(intakeDeps).filter((l) => !keep.has(listenerKey(l.config)));
      for (const l of fresh) await l.listen();
      listeners = [...listeners.filter((l) => !retired.includes(l)), ...fresh];
      for (const l of listeners) {
        if (nextPolicy.tls) l.updateTls(nextPolicy.tls);
        l.applyLimits(next.limits);
      }
      queue.reconfigure(next);
      if (!opts.log) log.level = next.log.level; // an injected logger belongs to the caller
      lastSeen = fingerprint(); // the new config may name other files: compare against those from now on
      metrics.configReloads.inc({ result: 'success' });
      log.info({ event: 'config_reloaded', file: opts.configFile }, 'configuration reloaded');
      return true;
    } catch (err) {
      metrics.configReloads.inc({ result: 'failure' });
      const message = err instanceof MailfleetError ? err.describe() : (err as Error).message;
      log.error({ event: 'config_rejected', file: opts.configFile, error: message }, 'new configuration refused; the running one stays');
      return false;
    }
  };
  const reloadSerial = () => (reloading = reloading.then(reload, reload));

  // The config file and the files it names (TLS key pair, users, DKIM keys) are watched: cert-manager
  // renewing a certificate or a new users Secret must take effect like a config change.
  // Polling the paths sees a Secret's or ConfigMap's symlink swap, which fs.watch can miss.
  const watchedFiles = () => {
    const c = policy.config;
    const dkimKeys = c.senderDomains.flatMap((d) => d.dkim?.keys.map((k) => k.privateKeyFile) ?? []);
    return [opts.configFile!, c.tls?.certFile, c.tls?.keyFile, c.auth?.usersFile, ...dkimKeys].filter((f): f is string => !!f);
  };
  const fingerprint = () => watchedFiles().map((f) => `${f}:${fs.statSync(f, { throwIfNoEntry: false })?.mtimeMs}`).join('|');
  let lastSeen = opts.configFile ? fingerprint() : '';
  const watcher = opts.configFile
    ? setInterval(() => {
        const now = fingerprint();
        if (now !== lastSeen) {
          lastSeen = now;
          void reloadSerial();
        }
      }, 1000)
    : undefined;
  watcher?.unref();

  let shuttingDown: Promise<void> | undefined;
  const shutdown = () =>
    (shuttingDown ??= (async () => {
      draining = true;
      clearInterval(watcher);
      const deadline = Date.now() + policy.config.shutdown.drainTimeout * 1000;
      // Stop listening before saying so: whoever reads the log line may connect next.
      for (const l of listeners) l.stopListening();
      log.info({ event: 'draining', deadline: new Date(deadline).toISOString() }, 'stopping: no new mail, open sessions finish, delivering until the deadline');
      // Sessions get at most half the drain time to finish; delivery gets the rest.
      const sessionDeadline = Date.now() + (deadline - Date.now()) / 2;
      await Promise.all(listeners.map((l) => l.drain(sessionDeadline)));
      // With a fleet to hand to, delivery stops early enough to hand the rest over in time.
      const handoff = policy.config.handoff;
      const token = await readToken(handoff.tokenFile);
      const peers = token ? await findPeers(handoff).catch(() => []) : [];
      const handingOff = !!token && peers.length > 0;
      let left = await queue.stop(handingOff ? deadline - handoff.window * 1000 : deadline);
      // A peer's message that passed the accepting check before the drain began is stored first.
      while (receiving > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (handingOff) {
        const result = await handOffSpool({ spool, peers, token: token!, deadline, log, sent: () => metrics.handoffMessages.inc({ direction: 'sent' }) });
        metrics.handoffMessages.inc({ direction: 'left' }, result.left);
        log.info({ event: 'handoff', handed: result.handed, left: result.left, peers }, `handed ${result.handed} message(s) to peers; ${result.left} stay`);
        left = result.left;
      } else if (token && left !== 0) {
        log.warn({ event: 'handoff', handed: 0, left, peers: [] }, 'no peer to hand the remaining mail to: it stays in the spool');
      }
      // The handed-over messages' done marks reach the disk before the process ends.
      await spool.close();
      // After the queue: its last bounces still go on the list.
      await suppressions.close();
      await lock.release();
      await new Promise<void>((r) => httpServer.close(() => r()));
      httpServer.closeAllConnections();
      const leftText = Number.isNaN(left) ? 'the queue worker had stopped; every undelivered message stays' : `${left} message(s) stay`;
      log.info({ event: 'stopped', leftInSpool: Number.isNaN(left) ? null : left }, `stopped; ${leftText} in the spool for the next start`);
    })());

  return {
    config: () => policy.config,
    get ports() {
      return ports();
    },
    httpPort: portOf(httpServer),
    queue,
    metrics,
    metricsText: async () => (await metricsText()).text,
    queueStats: () => queue.stats(),
    spool,
    suppressions,
    reload: reloadSerial,
    shutdown,
  };
}
