/** `mailfleet operator` as the chart runs it: flags, KUBECONFIG, metrics and health, the Lease, SIGTERM. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { KubeEmulator } from './kube/emulator.js';
import { startCluster } from './support/operator.js';
import { spawnMailfleet, type RelayProcess } from './support/process.js';
import { waitFor } from './support/relay.js';

describe('mailfleet operator (the process)', () => {
  let cluster: KubeEmulator;
  let op: RelayProcess | undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-operator-'));
  afterAll(async () => {
    if (op && op.child.exitCode === null) op.child.kill('SIGKILL');
    await cluster?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reconciles with the flags the chart passes, serves metrics and health, holds the Lease and gives it up on SIGTERM', async () => {
    cluster = await startCluster();
    const kubeconfig = path.join(dir, 'kubeconfig');
    fs.writeFileSync(kubeconfig, cluster.kubeConfig().exportConfig());
    op = spawnMailfleet(['operator', '--namespaces=mail', '--leader-elect', '--leader-election-namespace=default', '--metrics-port=0', '--health-port=0', '--log-level=info'], {
      env: { KUBECONFIG: kubeconfig, POD_NAME: 'mailfleet-operator-abc', MAILFLEET_RELAY_IMAGE: 'registry.test/mailfleet:1' },
    });
    await op.waitForLog(/"event":"started"/);
    const started = JSON.parse(op.output().split('\n').find((l) => l.includes('"event":"started"'))!) as { metricsPort: number; healthPort: number; namespaces: string[] };
    expect(started.namespaces).toEqual(['mail']);
    await op.waitForLog(/"event":"leading"/);

    const res = await fetch(`${cluster.url}/apis/mailfleet.io/v1alpha1/namespaces/mail/senderdomains/example-com?fieldManager=kubectl`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/apply-patch+yaml' },
      body: JSON.stringify({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', metadata: { name: 'example-com', namespace: 'mail' }, spec: { domain: 'example.com', verification: { resolvers: ['127.0.0.1:9'] } } }),
    });
    expect(res.status).toBe(201);
    await waitFor(() => !!cluster.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'mail', name: 'example-com-dkim' }), 'the DKIM Secret');

    expect((await fetch(`http://127.0.0.1:${started.healthPort}/healthz`)).status).toBe(200);
    expect(await (await fetch(`http://127.0.0.1:${started.healthPort}/readyz`)).text()).toBe('ready\n');
    const metrics = await (await fetch(`http://127.0.0.1:${started.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/mailfleet_operator_reconciles_total\{controller="senderdomain",result="success"\} [1-9]/);
    expect(metrics).toMatch(/mailfleet_operator_leader 1/);
    const lease = () => cluster.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: 'default', name: 'mailfleet-operator' }) as unknown as { spec: { holderIdentity?: string | null } };
    expect(lease().spec.holderIdentity).toBe('mailfleet-operator-abc');

    op.child.kill('SIGTERM');
    expect(await op.exited).toBe(0);
    // Given up, so a standby takes over at once instead of waiting for the lease to expire.
    expect(lease().spec.holderIdentity ?? null).toBeNull();
  });
});
