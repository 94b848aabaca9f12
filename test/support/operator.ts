/** An emulated cluster with mailfleet's CRDs, and the real operator in this process against it. */
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import YAML from 'yaml';
import { startOperator, type OperatorOptions, type RunningOperator } from '../../operator/main.js';
import { startKubeEmulator, type KubeEmulator, type KubeEmulatorOptions } from '../kube/emulator.js';

/** crds/ at the package root, whether this runs from the sources or from dist/. */
function crdDir(): string {
  for (let dir = import.meta.dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'crds');
  }
  throw new Error('no package.json above test/support');
}

export function mailfleetCrds(): object[] {
  const dir = crdDir();
  return fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).map((f) => YAML.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as object);
}

export function startCluster(opts: KubeEmulatorOptions = {}): Promise<KubeEmulator> {
  return startKubeEmulator({ namespaces: ['mail'], deploymentsBecomeAvailable: { afterMs: 50 }, ...opts, crds: [...mailfleetCrds(), ...(opts.crds ?? [])] });
}

export function startTestOperator(cluster: KubeEmulator, over: Partial<OperatorOptions> = {}): Promise<RunningOperator> {
  return startOperator({
    kubeConfig: cluster.kubeConfig(),
    log: pino({ level: process.env.MF_TEST_LOG ?? 'silent' }),
    namespaces: [],
    leaderElection: { enabled: false, namespace: 'default', name: 'mailfleet-operator', identity: 'test', leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 300 },
    metricsPort: 0,
    healthPort: 0,
    defaultImage: 'ghcr.io/mailfleet/mailfleet:test',
    resyncMs: 60_000,
    missingRetryMs: 300,
    ...over,
  });
}
