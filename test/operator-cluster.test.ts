/**
 * The operator scenarios against a real Kubernetes API server: the cluster KUBECONFIG names
 * (MF_REAL_CLUSTER=1 to use it: tests create and delete a namespace there), or a K3s started
 * with testcontainers where a container runtime exists. These machines have neither, so here
 * the suite is skipped, and says so; test/operator.test.ts runs the same scenarios against the
 * emulator everywhere.
 */
import fs from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, type AnyObject } from '../operator/kube/client.js';
import { startOperator, type RunningOperator } from '../operator/main.js';
import { mailfleetCrds } from './support/operator.js';
import { waitFor } from './support/relay.js';

const useKubeconfig = process.env.MF_REAL_CLUSTER === '1' && !!process.env.KUBECONFIG && fs.existsSync(process.env.KUBECONFIG);
const runtime = ['/var/run/docker.sock', `/run/user/${process.getuid?.() ?? 0}/podman/podman.sock`].some((s) => fs.existsSync(s)) || !!process.env.DOCKER_HOST;
const available = useKubeconfig || runtime;
if (!available) {
  process.stderr.write('!!! SKIPPING the real-cluster operator suite: no KUBECONFIG with MF_REAL_CLUSTER=1 and no container runtime for K3s here; the same scenarios ran against the API emulator (test/operator.test.ts)\n');
}

(available ? describe : describe.skip)('operator on a real cluster', () => {
  const ns = `mailfleet-test-${process.pid}`;
  let kubeConfig: KubeConfig;
  let client: KubeClient;
  let operator: RunningOperator | undefined;
  let stopCluster: (() => Promise<unknown>) | undefined;

  beforeAll(async () => {
    kubeConfig = new KubeConfig();
    if (useKubeconfig) kubeConfig.loadFromDefault();
    else {
      const { K3sContainer } = await import('@testcontainers/k3s');
      const k3s = await new K3sContainer('rancher/k3s:v1.31.2-k3s1').start();
      stopCluster = () => k3s.stop();
      kubeConfig.loadFromString(k3s.getKubeConfig());
    }
    client = new KubeClient(kubeConfig);
    for (const crd of mailfleetCrds()) await client.apply(crd as AnyObject);
    await client.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } } as never).catch(() => undefined);
    operator = await startOperator({
      kubeConfig,
      log: pino({ level: 'silent' }),
      namespaces: [ns],
      leaderElection: { enabled: false, namespace: ns, name: 'mailfleet-operator', identity: 'test', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 },
      metricsPort: 0,
      healthPort: 0,
      defaultImage: 'ghcr.io/mailfleet/mailfleet:test',
      resyncMs: 60_000,
      missingRetryMs: 1000,
    });
  }, 300_000);
  afterAll(async () => {
    await operator?.stop();
    await client?.delete({ apiVersion: 'v1', kind: 'Namespace', name: ns } as never).catch(() => undefined);
    await stopCluster?.();
  });

  const read = (kind: string, name: string) => client.get({ apiVersion: kind === 'Secret' ? 'v1' : 'mailfleet.io/v1alpha1', kind, namespace: ns, name });
  const conditionOf = (o: AnyObject | undefined, type: string) => ((o?.status as { conditions?: { type: string; status: string; message: string }[] } | undefined)?.conditions ?? []).find((c) => c.type === type);

  it('a SenderDomain gets its key Secret and records; deleting it collects the Secret', async () => {
    await client.apply({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', metadata: { name: 'example-com', namespace: ns }, spec: { domain: 'example.com' } });
    await waitFor(async () => conditionOf(await read('SenderDomain', 'example-com'), 'KeysReady')?.status === 'True', 'KeysReady', 60_000);
    expect(await read('Secret', 'example-com-dkim')).toBeDefined();
    await client.delete({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', namespace: ns, name: 'example-com' });
    await waitFor(async () => !(await read('Secret', 'example-com-dkim')), 'the Secret collected', 60_000);
  });

  it('a MailRelay waits, Degraded, for its Secret and converges when it appears', async () => {
    await client.apply({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', metadata: { name: 'outbound', namespace: ns }, spec: { listeners: [{ name: 'plain', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['10.0.0.0/8'] }], usersSecretName: 'outbound-users' } });
    await waitFor(async () => conditionOf(await read('MailRelay', 'outbound'), 'Degraded')?.status === 'True', 'Degraded', 60_000);
    await client.apply({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'outbound-users', namespace: ns }, stringData: { users: 'app:x' } });
    await waitFor(async () => conditionOf(await read('MailRelay', 'outbound'), 'Degraded')?.status === 'False', 'no longer Degraded', 60_000);
    expect(await client.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name: 'outbound' })).toBeDefined();
  });
});
