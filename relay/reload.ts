/**
 * Config reload: the relay re-reads its config file when asked (SIGHUP) and when the file, or a
 * file it names, changes. cert-manager renewing a certificate, a new users Secret or rotated
 * smarthost credentials must take effect like a config change; the paths are polled, because
 * a Secret's or ConfigMap's symlink swap can escape fs.watch. A new config that does not load
 * whole is refused and the running one stays. Reloads run one at a time.
 */
import fs from 'node:fs';
import type { Logger } from 'pino';
import { loadConfigFile, type RelayConfig } from './config.js';
import { MailfleetError } from './errors.js';
import type { IntakeMetrics } from './metrics.js';

/** The files whose change means a reload: the config and the Secrets it names. */
export function watchedFiles(configFile: string, c: RelayConfig): string[] {
  const dkimKeys = c.senderDomains.flatMap((d) => d.dkim?.keys.map((k) => k.privateKeyFile) ?? []);
  const route = c.delivery.route;
  const credentials = route.type === 'smarthost' ? [route.credentialsFile, route.usernameFile, route.passwordFile] : [];
  const webhooks = c.events.webhooks.flatMap((w) => [w.caFile, ...w.signingKeys.map((k) => k.secretFile)]);
  return [configFile, c.tls?.certFile, c.tls?.keyFile, c.auth?.usersFile, c.delivery.tlsPolicy.caFile, ...credentials, ...dkimKeys, ...webhooks, c.bounces?.keyFile].filter((f): f is string => !!f);
}

export interface Reloader {
  /** Re-reads the config file now; resolves true when the new config was applied (false once stopped). */
  reload(): Promise<boolean>;
  /** Takes no more reloads; resolves once the one under way, if any, is over (a stopping relay drains what it left). */
  stop(): Promise<void>;
}

export function watchConfig(opts: {
  file: string;
  current: () => RelayConfig;
  /** Checks and applies a loaded config; throws (changing nothing) when it cannot be. */
  apply: (next: RelayConfig) => Promise<void>;
  log: Logger;
  metrics: IntakeMetrics;
  pollMs?: number;
}): Reloader {
  const fingerprint = () =>
    watchedFiles(opts.file, opts.current())
      .map((f) => `${f}:${fs.statSync(f, { throwIfNoEntry: false })?.mtimeMs}`)
      .join('|');
  let lastSeen = fingerprint();
  let stopped = false;
  const reloadOnce = async (): Promise<boolean> => {
    if (stopped) return false;
    try {
      await opts.apply(loadConfigFile(opts.file));
      lastSeen = fingerprint(); // the new config may name other files: compare against those from now on
      opts.metrics.configReloads.inc({ result: 'success' });
      opts.log.info({ event: 'config_reloaded', file: opts.file }, 'configuration reloaded');
      return true;
    } catch (err) {
      opts.metrics.configReloads.inc({ result: 'failure' });
      const message = err instanceof MailfleetError ? err.describe() : (err as Error).message;
      opts.log.error({ event: 'config_rejected', file: opts.file, error: message }, 'new configuration refused; the running one stays');
      return false;
    }
  };
  let reloading: Promise<boolean> = Promise.resolve(true);
  const reload = () => (reloading = reloading.then(reloadOnce, reloadOnce));
  const timer = setInterval(() => {
    const now = fingerprint();
    if (now !== lastSeen) {
      lastSeen = now;
      void reload();
    }
  }, opts.pollMs ?? 1000);
  timer.unref();
  return {
    reload,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await reloading;
    },
  };
}
