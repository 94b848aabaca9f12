/** An emulated cluster with mailfleet's CRDs, and the real operator in this process against it. */
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import YAML from 'yaml';
import { startOperator, type OperatorOptions, type RunningOperator } from '../../operator/main.js';
import { startKubeEmulator, type KubeEmulator, type KubeEmulatorOptions } from '../kube/emulator.js';

const CRD_DIR = path.resolve(import.meta.dirname, '../../crds');

export function mailfleetCrds(): object[] {
  return fs.readdirSync(CRD_DIR).filter((f) => f.endsWith('.yaml')).map((f) => YAML.parse(fs.readFileSync(path.join(CRD_DIR, f), 'utf8')) as object);
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
