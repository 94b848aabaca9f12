/**
 * What the real-cluster suites share: the cluster from the global setup, clients as the admin
 * and as a ServiceAccount (a token the API server signs through TokenRequest, so RBAC judges
 * every request), the real kubectl and helm, and the chart installed the way a user would.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import YAML from 'yaml';
import { describe, inject, it } from 'vitest';
import { KubeClient, KubeError, type AnyObject } from '../../operator/kube/client.js';
import { startOperator, type OperatorOptions, type RunningOperator } from '../../operator/main.js';
import { layerBinaries, runHelm } from '../peers/helm.js';
import { run, type RunResult } from '../peers/proc.js';
import { kubeconfigYaml, type ClusterAccess } from './cluster.js';
import type { FaultProxy } from './faults.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * `describe` for a suite on the real cluster: runs it when the global setup started one; in
 * CI the global setup has already failed without one; elsewhere it skips, loudly.
 */
export function describeCluster(name: string, fn: (access: () => ClusterAccess) => void): void {
  const provided = inject('cluster');
  if (provided.access) {
    const access = provided.access;
    describe(name, () => fn(() => access));
    return;
  }
  if (process.env.CI) {
    describe(name, () => it('needs a real kube-apiserver', () => { throw new Error(provided.missing); }));
    return;
  }
  process.stderr.write(`!!! SKIPPING ${name}: ${provided.missing}\n`);
  describe.skip(name, () => fn(() => { throw new Error('no cluster'); }));
}

/** The server's minor version (20 for v1.20.2). */
export function minorVersion(access: ClusterAccess): number {
  return Number(/^v1\.(\d+)\./.exec(access.version)?.[1] ?? 0);
}

export function kubeConfigFor(access: ClusterAccess, token: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigYaml(access.server, access.caFile, token));
  return kc;
}

export function adminClient(access: ClusterAccess): KubeClient {
  return new KubeClient(kubeConfigFor(access, access.adminToken));
}

/** A kubeconfig file for a token (kubectl, helm, an operator process). */
export function kubeconfigFile(access: ClusterAccess, token: string, name = 'admin'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-kubeconfig-'));
  const file = path.join(dir, `${name}.kubeconfig`);
  fs.writeFileSync(file, kubeconfigYaml(access.server, access.caFile, token, name), { mode: 0o600 });
  return file;
}

/** A token for a ServiceAccount, signed by the API server (TokenRequest), as a pod would mount it. */
export async function serviceAccountToken(access: ClusterAccess, namespace: string, name: string): Promise<string> {
  const client = adminClient(access);
  const path = `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`;
  const result = await client.raw<{ status: { token: string } }>('POST', path, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 7200 } });
  return result.status.token;
}

/** The real kubectl (from the layer package) as the admin; a non-zero exit is a result. */
export function kubectl(access: ClusterAccess, args: string[], opts: { input?: string; token?: string } = {}): Promise<RunResult> {
  return run(layerBinaries().kubectl, args, { input: opts.input, env: { ...process.env, KUBECONFIG: kubeconfigFile(access, opts.token ?? access.adminToken) }, timeoutMs: 120_000 });
}

/** Whether the API server serves a group/version (discovery), as a client learns it. */
export function serves(access: ClusterAccess, apiVersion: string): Promise<boolean> {
  return adminClient(access).serves(apiVersion);
}

export interface ChartInstall {
  namespace: string;
  objects: AnyObject[];
  /** What the server here cannot take, and so was left out or cut down (for the run's report). */
  notChecked: string[];
  serviceAccount: string;
  operatorDeployment: AnyObject;
}

/** Removes `x-kubernetes-validations` (CEL) from a schema; returns how many rules went. */
function stripCel(node: unknown): number {
  if (Array.isArray(node)) return node.reduce((n: number, v) => n + stripCel(v), 0);
  if (!node || typeof node !== 'object') return 0;
  const o = node as Record<string, unknown>;
  let n = 0;
  if (Array.isArray(o['x-kubernetes-validations'])) {
    n += (o['x-kubernetes-validations'] as unknown[]).length;
    delete o['x-kubernetes-validations'];
  }
  for (const v of Object.values(o)) n += stripCel(v);
  return n;
}

/**
 * `helm template` of the chart (with its CRDs), cut to what this server can take: CEL rules
 * need v1.25 (they are stripped below it), and objects of API versions the server does not
 * serve (policy/v1 on v1.20) are left out. Each cut is named in `notChecked`.
 */
export async function chartFor(access: ClusterAccess, release: string, namespace: string, set: string[] = []): Promise<ChartInstall> {
  // The chart says kubeVersion >=1.27; helm template is told so, the server is what it is.
  const rendered = await runHelm(['template', release, 'charts/mailfleet', '--namespace', namespace, '--include-crds', '--kube-version', '1.27.0', ...set.flatMap((s) => ['--set', s])]);
  if (rendered.code !== 0) throw new Error(`helm template: ${rendered.stderr}`);
  const objects = YAML.parseAllDocuments(rendered.stdout).map((d) => d.toJSON() as AnyObject).filter(Boolean);
  const notChecked: string[] = [];
  const kept: AnyObject[] = [];
  for (const o of objects) {
    if (!(await serves(access, o.apiVersion))) {
      notChecked.push(`${o.kind} ${o.metadata.name}: ${o.apiVersion} is not served by ${access.version}`);
      continue;
    }
    if (o.kind === 'CustomResourceDefinition' && minorVersion(access) < 25) {
      const rules = stripCel(o);
      if (rules) notChecked.push(`CRD ${o.metadata.name}: ${rules} CEL rule(s) (x-kubernetes-validations) stripped: ${access.version} has no CEL`);
    }
    kept.push(o);
  }
  const operatorDeployment = kept.find((o) => o.kind === 'Deployment')!;
  const serviceAccount = kept.find((o) => o.kind === 'ServiceAccount')!.metadata.name;
  return { namespace, objects: kept, notChecked, serviceAccount, operatorDeployment };
}

/** Applies manifests with the real kubectl; throws kubectl's own words on failure. */
export async function kubectlApply(access: ClusterAccess, objects: AnyObject[], extra: string[] = []): Promise<RunResult> {
  // JSON, not YAML: kubectl reads YAML 1.1, where an unquoted y or no is a boolean.
  const result = await kubectl(access, ['apply', '-f', '-', ...extra], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }) });
  if (result.code !== 0) throw new Error(`kubectl apply: ${result.stderr || result.stdout}`);
  return result;
}

/** Creates a namespace unless it exists. */
export async function ensureNamespace(access: ClusterAccess, name: string): Promise<void> {
  const client = adminClient(access);
  await client.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } }).catch((err: unknown) => {
    if (!(err instanceof KubeError && err.code === 409)) throw err;
  });
}

let installed: Promise<ChartInstall> | undefined;

/** The chart as a user installs it (CRDs, RBAC, the operator's Deployment), once per test process. */
export function installChartOnce(access: ClusterAccess): Promise<ChartInstall> {
  installed ??= (async () => {
    const chart = await chartFor(access, 'mailfleet', 'mailfleet-system');
    await ensureNamespace(access, chart.namespace);
    await kubectlApply(access, chart.objects);
    const client = adminClient(access);
    for (const name of ['mailrelays.mailfleet.io', 'senderdomains.mailfleet.io']) {
      for (let i = 0; ; i++) {
        const crd = await client.get<AnyObject & { status?: { conditions?: { type: string; status: string }[] } }>({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name });
        if (crd?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')) break;
        if (i > 200) throw new Error(`${name} not Established`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return chart;
  })();
  return installed;
}

/** The operator's container args and env as the chart renders them. */
export function operatorArgs(chart: ChartInstall): { args: string[]; env: { name: string; value?: string }[] } {
  const container = (chart.operatorDeployment.spec as { template: { spec: { containers: { args: string[]; env: { name: string; value?: string }[] }[] } } }).template.spec.containers[0]!;
  return { args: container.args, env: container.env };
}

/**
 * Polls `check` every 100 ms (a real server is asked each time) until it holds; throws after
 * `timeoutMs`, with what `explain` says of the state it ended in (for a failure seen only in CI).
 */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000, explain?: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const state = explain ? `\n${await explain().catch((err: Error) => `(could not explain: ${err.message})`)}` : '';
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}${state}`);
}

/**
 * The operator in this process as the chart's ServiceAccount (RBAC judges every request),
 * watching one namespace, leader election off; through a fault proxy when one is given.
 */
export async function startChartOperator(access: ClusterAccess, chart: ChartInstall, namespace: string, opts: Partial<OperatorOptions> & { proxy?: FaultProxy } = {}): Promise<RunningOperator> {
  const { proxy, ...over } = opts;
  const token = await serviceAccountToken(access, chart.namespace, chart.serviceAccount);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(proxy ? kubeconfigYaml(proxy.url, undefined, token) : kubeconfigYaml(access.server, access.caFile, token));
  return startOperator({
    kubeConfig,
    log: pino({ level: process.env.MF_TEST_LOG ?? 'silent' }),
    namespaces: [namespace],
    leaderElection: { enabled: false, namespace, name: 'mailfleet-operator', identity: 'test', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2000 },
    metricsPort: 0,
    healthPort: 0,
    defaultImage: 'ghcr.io/mailfleet/mailfleet:test',
    resyncMs: 60_000,
    missingRetryMs: 500,
    ...over,
  });
}
