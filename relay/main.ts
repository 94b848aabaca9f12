/**
 * The relay process: reads config, recovers the spool, starts delivery, listeners and the
 * HTTP endpoint, reloads config on change, and drains on SIGTERM. Each stage lives in its
 * own module; this one only wires them and owns the process lifecycle.
 */
import fs from 'node:fs';
import type http from 'node:http';
import type { Logger } from 'pino';
import { loadConfigFile, type ListenerConfig, type RelayConfig } from './config.js';
import { createRoute } from './delivery/routes.js';
import { ErrorCodes, MailfleetError } from './errors.js';
import { portOf, startHttp } from './http.js';
import { createListeners, SmtpListener, type IntakePolicy } from './intake.js';
import { createLogger } from './log.js';
import { RelayMetrics } from './metrics.js';
import { QueueManager, type QueueSettings } from './queue.js';
import { Spool } from './spool.js';
import { UserStore } from './users.js';

export interface RelayOptions {
  config: RelayConfig;
  /** Watched for changes when given (a ConfigMap mount). */
  configFile?: string;
  log?: Logger;
}

export interface RunningRelay {
  config: () => RelayConfig;
  ports: Record<string, number>;
  httpPort: number;
  queue: QueueManager;
  metrics: RelayMetrics;
  spool: Spool;
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
  return { config, users, tls };
}

function queueSettings(c: RelayConfig): QueueSettings {
  return {
    hostname: c.hostname,
    messagesPerConnection: c.delivery.messagesPerConnection,
    maxConnections: c.delivery.maxConnections,
    maxConnectionsPerDestination: c.delivery.maxConnectionsPerDestination,
    minBackoff: c.retry.minBackoff,
    maxBackoff: c.retry.maxBackoff,
    lifetime: c.retry.lifetime,
    delayNoticeAfter: c.retry.delayNoticeAfter,
  };
}

function routeFor(c: RelayConfig) {
  return createRoute(c.delivery.route, { heloName: c.hostname, connectTimeoutMs: c.delivery.connectTimeout * 1000, responseTimeoutMs: c.delivery.responseTimeout * 1000 });
}

const listenerKey = (l: ListenerConfig) => JSON.stringify(l);

export async function startRelay(opts: RelayOptions): Promise<RunningRelay> {
  let policy = loadPolicy(opts.config);
  const log = opts.log ?? createLogger(opts.config.log.level);
  let draining = false;

  const spool = new Spool(opts.config.spool.dir);
  await spool.open();
  let route = routeFor(opts.config);
  // The gauges read the queue at scrape time; the queue reports into the metrics.
  const queueRef: { current?: QueueManager } = {};
  const metrics = new RelayMetrics(() => queueRef.current!.scheduler.stats(Date.now()));
  const queue = (queueRef.current = new QueueManager(queueSettings(opts.config), { spool, route, log, metrics }));

  const report = await spool.recover();
  for (const entry of report.entries) queue.enqueue(entry);
  log.info({ event: 'recovered', messages: report.entries.length, discardedPartial: report.discardedPartial, corrupt: report.corrupt }, 'spool recovered');
  if (report.corrupt.length) log.error({ event: 'corrupt', files: report.corrupt }, `unreadable spool files moved to ${opts.config.spool.dir}/corrupt/`);
  queue.start();

  const intakeDeps = { spool, metrics, log, policy: () => policy, accepted: (e: Parameters<QueueManager['enqueue']>[0]) => queue.enqueue(e), accepting: () => !draining };
  let listeners: SmtpListener[] = createListeners(intakeDeps);
  try {
    for (const l of listeners) await l.listen();
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()));
    throw new MailfleetError(ErrorCodes.LISTEN_FAILED, `cannot listen: ${(err as Error).message}`, 'another process holds the port, or the address is not on this host');
  }
  const ports = () => Object.fromEntries(listeners.map((l) => [l.config.name, l.port]));

  const httpServer: http.Server = await startHttp({
    address: opts.config.http.address,
    port: opts.config.http.port,
    registry: metrics.registry,
    healthy: () => ({ ok: true }),
    ready: async () => {
      if (draining) return { ok: false, reason: 'shutting down' };
      const free = await spool.freeBytes();
      if (free < policy.config.spool.minFreeBytes) return { ok: false, reason: `spool has ${free} bytes free, below the floor of ${policy.config.spool.minFreeBytes}` };
      return { ok: true };
    },
  });

  for (const l of listeners) log.info({ event: 'listening', listener: l.config.name, address: l.config.address, port: l.port, tls: l.config.tls, auth: l.config.auth }, 'listening');

  let reloading: Promise<boolean> = Promise.resolve(true);
  const reload = async (): Promise<boolean> => {
    if (!opts.configFile) return false;
    try {
      const next = loadConfigFile(opts.configFile);
      const nextPolicy = loadPolicy(next);
      const old = policy.config;
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
      if (JSON.stringify(old.delivery) !== JSON.stringify(next.delivery)) route = routeFor(next);
      queue.reconfigure(queueSettings(next), route);
      if (!opts.log) log.level = next.log.level; // an injected logger belongs to the caller
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

  let lastStat = opts.configFile ? fs.statSync(opts.configFile, { throwIfNoEntry: false })?.mtimeMs : undefined;
  const watcher = opts.configFile
    ? setInterval(() => {
        // Polling the path sees a ConfigMap's symlink swap, which fs.watch can miss.
        const m = fs.statSync(opts.configFile!, { throwIfNoEntry: false })?.mtimeMs;
        if (m !== lastStat) {
          lastStat = m;
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
      log.info({ event: 'draining', deadline: new Date(deadline).toISOString(), queued: queue.size }, 'stopping: no new mail, open sessions finish, delivering until the deadline');
      // Sessions get at most half the drain time to finish; delivery gets the rest.
      const sessionDeadline = Date.now() + (deadline - Date.now()) / 2;
      await Promise.all(listeners.map((l) => l.drain(sessionDeadline)));
      await queue.stop(deadline);
      await new Promise<void>((r) => httpServer.close(() => r()));
      httpServer.closeAllConnections();
      log.info({ event: 'stopped', leftInSpool: queue.size }, `stopped; ${queue.size} message(s) stay in the spool for the next start`);
    })());

  return {
    config: () => policy.config,
    get ports() {
      return ports();
    },
    httpPort: portOf(httpServer),
    queue,
    metrics,
    spool,
    reload: reloadSerial,
    shutdown,
  };
}
