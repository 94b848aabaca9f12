/**
 * The operator against the Kubernetes API emulator (test/kube), only for what the real API
 * server these machines can run (v1.20, test/cluster/) cannot express. Everything else runs
 * against the real one: npm run test:cluster.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningOperator } from '../operator/main.js';
import type { KubeEmulator } from './kube/emulator.js';
import { startCluster, startTestOperator } from './support/operator.js';
import { waitFor } from './support/relay.js';

type Obj = { metadata: { name: string }; spec?: Record<string, unknown>; status?: { conditions?: { type: string; status: string; reason: string }[] } };

async function apply(cluster: KubeEmulator, path: string, object: object): Promise<void> {
  const res = await fetch(`${cluster.url}${path}?fieldManager=kubectl&force=true`, { method: 'PATCH', headers: { 'content-type': 'application/apply-patch+yaml' }, body: JSON.stringify(object) });
  if (!res.ok) throw new Error(`apply ${path}: ${res.status} ${await res.text()}`);
}

describe('operator on the API emulator: what v1.20 cannot express', () => {
  let cluster: KubeEmulator | undefined;
  let operator: RunningOperator | undefined;
  afterEach(async () => {
    await operator?.stop();
    await cluster?.stop();
  });

  it('makes a PodDisruptionBudget where the cluster serves policy/v1 (Kubernetes 1.21 and later), and is not Degraded for it', async () => {
    cluster = await startCluster();
    operator = await startTestOperator(cluster);
    for (const [name, data] of [['outbound-tls', { 'tls.crt': 'x', 'tls.key': 'y' }], ['outbound-users', { users: 'app:x' }]] as const) {
      await apply(cluster, `/api/v1/namespaces/mail/secrets/${name}`, { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'mail' }, stringData: data });
    }
    await apply(cluster, '/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/outbound', { apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', metadata: { name: 'outbound', namespace: 'mail' }, spec: { tlsSecretName: 'outbound-tls', usersSecretName: 'outbound-users' } });
    const c = cluster;
    await waitFor(() => !!c.get({ apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', namespace: 'mail', name: 'outbound' }), 'the PodDisruptionBudget');
    const pdb = c.get({ apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', namespace: 'mail', name: 'outbound' }) as unknown as Obj;
    expect(pdb.spec).toMatchObject({ maxUnavailable: 1, selector: { matchLabels: { 'app.kubernetes.io/name': 'mailfleet-relay', 'app.kubernetes.io/instance': 'outbound' } } });
    await waitFor(() => (c.get({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: 'mail', name: 'outbound' }) as unknown as Obj).status?.conditions?.find((x) => x.type === 'Ready')?.status === 'True', 'Ready');
    const relay = c.get({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: 'mail', name: 'outbound' }) as unknown as Obj;
    expect(relay.status?.conditions?.find((x) => x.type === 'Degraded')).toMatchObject({ status: 'False', reason: 'Reconciled' });
  });
});
