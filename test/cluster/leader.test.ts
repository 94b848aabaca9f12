/**
 * `mailfleet operator` as processes, with the args and env the chart's Deployment gives its
 * container (only the two ports moved: both replicas share this host's loopback), as the chart's
 * ServiceAccount, against the real API server: two replicas elect one leader through the Lease,
 * only the leader reconciles, and SIGTERM hands the lease to the standby at once.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AnyObject } from '../../operator/kube/client.js';
import { freePort } from '../peers/ports.js';
import { spawnMailfleet, type RelayProcess } from '../support/process.js';
import { adminClient, describeCluster, ensureNamespace, eventually, installChartOnce, kubeconfigFile, kubectlApply, operatorArgs, serviceAccountToken, type ChartInstall } from './harness.js';

type Lease = AnyObject & { spec: { holderIdentity?: string | null; renewTime?: string | null; acquireTime?: string | null; leaseTransitions?: number } };

describeCluster('operator replicas with leader election on a real kube-apiserver', (cluster) => {
  let chart: ChartInstall;
  const replicas: { name: string; process: RelayProcess; metricsPort: number; healthPort: number }[] = [];
  const ns = `mf-leader-${process.pid}`;
  beforeAll(async () => {
    chart = await installChartOnce(cluster());
    await ensureNamespace(cluster(), ns);
  });
  afterAll(async () => {
    for (const r of replicas) if (r.process.child.exitCode === null) r.process.child.kill('SIGKILL');
    await Promise.all(replicas.map((r) => r.process.exited));
  });

  /** One replica: the chart's container args and env, its ports moved, the ServiceAccount's token. */
  async function replica(name: string) {
    const { args, env } = operatorArgs(chart);
    const [metricsPort, healthPort] = [await freePort(), await freePort()];
    const moved = args.map((a) => (a.startsWith('--metrics-port=') ? `--metrics-port=${metricsPort}` : a.startsWith('--health-port=') ? `--health-port=${healthPort}` : a));
    expect(moved).toContain('--leader-elect');
    const kubeconfig = kubeconfigFile(cluster(), await serviceAccountToken(cluster(), chart.namespace, chart.serviceAccount), chart.serviceAccount);
    // The downward API gives POD_NAME and POD_NAMESPACE; values the chart sets literally pass as they are.
    const literal = Object.fromEntries(env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
    const process = spawnMailfleet(moved, { env: { ...literal, KUBECONFIG: kubeconfig, POD_NAME: name, POD_NAMESPACE: chart.namespace } });
    const r = { name, process, metricsPort, healthPort };
    replicas.push(r);
    return r;
  }
  const leaderMetric = async (r: { metricsPort: number }) => /^mailfleet_operator_leader 1$/m.test(await fetch(`http://127.0.0.1:${r.metricsPort}/metrics`).then((x) => x.text(), () => ''));
  const lease = () => adminClient(cluster()).get<Lease>({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: chart.namespace, name: 'mailfleet-operator' });
  const keysReady = async (name: string) => {
    const sd = await adminClient(cluster()).get<AnyObject & { status?: { conditions?: { type: string; status: string }[] } }>({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', namespace: ns, name });
    return sd?.status?.conditions?.some((c) => c.type === 'KeysReady' && c.status === 'True') ?? false;
  };
  const senderDomain = (name: string, domain: string) => ({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', metadata: { name, namespace: ns }, spec: { domain, verification: { resolvers: ['127.0.0.1:9'] } } }) as unknown as AnyObject;

  it('elects one leader through the Lease (MicroTime, six digits), only the leader reconciles SenderDomains and MailRelays, and SIGTERM hands over to the standby at once', async () => {
    const a = await replica('mailfleet-operator-a');
    await a.process.waitForLog(/"event":"leading"/, 30_000);
    const b = await replica('mailfleet-operator-b');
    await b.process.waitForLog(/"event":"started"/, 30_000);
    expect(await leaderMetric(a)).toBe(true);
    expect(await leaderMetric(b), `a:\n${a.process.output()}\nb:\n${b.process.output()}`).toBe(false);
    const held = (await lease())!;
    expect(held.spec.holderIdentity).toBe('mailfleet-operator-a');
    // What the API server took: MicroTime with exactly six fractional digits.
    expect(held.spec.renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    for (const r of [a, b]) expect((await fetch(`http://127.0.0.1:${r.healthPort}/readyz`)).status, r.name).toBe(200);
    // The standby is not lying about itself: it never wrote the Lease, and it tried.
    expect(b.process.output()).not.toMatch(/could not reach the Lease/);

    await kubectlApply(cluster(), [senderDomain('one-com', 'one.com')]);
    await eventually(() => keysReady('one-com'), 'reconciled by the leader');
    const reconciles = async (r: { metricsPort: number }) => {
      const text = await fetch(`http://127.0.0.1:${r.metricsPort}/metrics`).then((x) => x.text());
      return [...text.matchAll(/^mailfleet_operator_reconciles_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    };
    await eventually(async () => (await reconciles(a)) > 0, 'the leader counts its reconciles');
    expect(await reconciles(b)).toBe(0);

    // A MailRelay too, with the chart's RBAC: its objects made, its status from the real Deployment.
    await kubectlApply(cluster(), [
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'outbound-tls', namespace: ns }, stringData: { 'tls.crt': 'x', 'tls.key': 'y' } },
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'outbound-users', namespace: ns }, stringData: { users: 'app:x' } },
      { apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', metadata: { name: 'outbound', namespace: ns }, spec: { tlsSecretName: 'outbound-tls', usersSecretName: 'outbound-users' } },
    ] as unknown as AnyObject[]);
    await eventually(async () => {
      const relay = await adminClient(cluster()).get<AnyObject & { status?: { conditions?: { type: string; reason: string }[] } }>({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: ns, name: 'outbound' });
      return relay?.status?.conditions?.find((c) => c.type === 'Progressing')?.reason === 'RollingOut' && !!(await adminClient(cluster()).get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name: 'outbound' }));
    }, 'the MailRelay reconciled by the leader');
    expect(a.process.output()).not.toMatch(/"level":50/);

    const stoppedAt = Date.now();
    a.process.child.kill('SIGTERM');
    expect(await a.process.exited).toBe(0);
    await eventually(() => leaderMetric(b), 'the standby leads', 15_000);
    const handover = (Date.now() - stoppedAt) / 1000;
    process.stdout.write(`handover after SIGTERM: ${handover.toFixed(1)} s (lease duration 15 s; retry period 2 s)\n`);
    // Given up on SIGTERM: the standby does not wait for the lease to expire.
    expect(handover).toBeLessThan(10);
    const after = (await lease())!;
    expect(after.spec.holderIdentity).toBe('mailfleet-operator-b');
    expect(after.spec.leaseTransitions).toBe((held.spec.leaseTransitions ?? 0) + 1);
    await kubectlApply(cluster(), [senderDomain('two-com', 'two.com')]);
    await eventually(() => keysReady('two-com'), 'reconciled by the new leader');
  });
});
