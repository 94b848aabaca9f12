/**
 * The autoscaler in the real operator against the API emulator: relay pods are Pod objects
 * whose /metrics are served by small local HTTP servers, so the queue each pod reports is set
 * by the test. What a user sees: the Deployment's replicas, the MailRelay's status and Events,
 * and the pods' deletion cost.
 */
import http from 'node:http';
import type net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningOperator } from '../operator/main.js';
import type { KubeEmulator } from './kube/emulator.js';
import { startCluster, startTestOperator } from './support/operator.js';
import { waitFor } from './support/relay.js';

interface FakePod {
  name: string;
  /** What its /metrics says: messages due now, all messages held; undefined: it does not answer. */
  queue?: { ready: number; queued: number } | undefined;
  server: http.Server;
  port: number;
}

async function fakePod(name: string, queue: FakePod['queue']): Promise<FakePod> {
  const pod = { name, queue } as FakePod;
  pod.server = http.createServer((_req, res) => {
    if (!pod.queue) return; // hangs, as a wedged pod would
    const { ready, queued } = pod.queue;
    res.end(`mailfleet_relay_queue_messages{state="ready"} ${ready}\nmailfleet_relay_queue_messages{state="deferred"} ${queued - ready}\nmailfleet_relay_queue_messages{state="inflight"} 0\nmailfleet_relay_queue_oldest_ready_seconds 1\nmailfleet_relay_smtp_sessions{listener="submission"} 0\n`);
  });
  await new Promise<void>((r) => pod.server.listen(0, '127.0.0.1', r));
  pod.port = (pod.server.address() as net.AddressInfo).port;
  return pod;
}

async function request(cluster: KubeEmulator, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<void> {
  const res = await fetch(`${cluster.url}${path}`, { method, headers: { 'content-type': contentType }, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
}

const apply = (cluster: KubeEmulator, path: string, object: object) => request(cluster, 'PATCH', `${path}?fieldManager=kubectl&force=true`, object, 'application/apply-patch+yaml');

/** A relay pod as the Deployment's ReplicaSet would make it, running and ready at 127.0.0.1. */
async function addPod(cluster: KubeEmulator, pod: FakePod): Promise<void> {
  const labels = { 'app.kubernetes.io/name': 'mailfleet-relay', 'app.kubernetes.io/instance': 'outbound', 'app.kubernetes.io/managed-by': 'mailfleet-operator' };
  await request(cluster, 'POST', '/api/v1/namespaces/mail/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: pod.name, namespace: 'mail', labels }, spec: { containers: [{ name: 'relay', image: 'mailfleet:test', ports: [{ name: 'metrics', containerPort: pod.port }] }] } });
  await request(cluster, 'PATCH', `/api/v1/namespaces/mail/pods/${pod.name}/status`, { status: { phase: 'Running', podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: 'True' }] } }, 'application/merge-patch+json');
}

type Relay = { spec: { replicas: number }; status?: { autoscaler?: { desiredReplicas?: number; lastDecision?: string }; lastScale?: { from: number; to: number; reason: string } } };

describe('autoscaler (operator on the emulator, pods with scripted /metrics)', () => {
  let cluster: KubeEmulator | undefined;
  let operator: RunningOperator | undefined;
  const pods: FakePod[] = [];
  afterEach(async () => {
    await operator?.stop();
    for (const p of pods.splice(0)) {
      p.server.closeAllConnections();
      p.server.close();
    }
    await cluster?.stop();
  });

  async function setup(autoscaling: object) {
    cluster = await startCluster();
    operator = await startTestOperator(cluster);
    await apply(cluster, '/api/v1/namespaces/mail/secrets/outbound-users', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'outbound-users', namespace: 'mail' }, stringData: { users: 'app:x' } });
    await apply(cluster, '/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/outbound', {
      apiVersion: 'mailfleet.io/v1alpha1',
      kind: 'MailRelay',
      metadata: { name: 'outbound', namespace: 'mail' },
      spec: { listeners: [{ name: 'submission', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['10.0.0.0/8'] }], usersSecretName: 'outbound-users', autoscaling },
    });
    const c = cluster;
    await waitFor(() => !!c.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'mail', name: 'outbound' }), 'the Deployment');
    return c;
  }
  const relay = () => cluster!.get({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: 'mail', name: 'outbound' }) as unknown as Relay;
  const deploymentReplicas = () => (cluster!.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'mail', name: 'outbound' }) as unknown as { spec: { replicas: number } }).spec.replicas;

  it('scales a backlog up at once within the rate policy, says why, and marks the fullest pods costly to delete', async () => {
    const c = await setup({ enabled: true, minReplicas: 2, maxReplicas: 10, interval: '1s', targets: { readyMessagesPerReplica: 100 } });
    expect(deploymentReplicas()).toBe(2);
    for (const [name, ready] of [['outbound-a', 1000], ['outbound-b', 1000]] as const) {
      const pod = await fakePod(name, { ready, queued: ready + 30 });
      pods.push(pod);
      await addPod(c, pod);
    }
    // 2 pods at 1,000 due messages each against 100 per replica ask for 20; the rate allows double or +4: 6 now.
    await waitFor(() => deploymentReplicas() === 6, 'the Deployment at 6 replicas', 15_000);
    const status = relay().status!;
    expect(status.autoscaler?.desiredReplicas).toBe(6);
    expect(status.lastScale).toMatchObject({ from: 2, to: 6 });
    expect(status.lastScale!.reason).toMatch(/^Scaling up from 2 to 6: messages due now per replica 1000 vs target 100/);
    const events = c.list({ apiVersion: 'v1', kind: 'Event', namespace: 'mail' }).map((e) => e as unknown as { reason: string; message: string });
    expect(events.find((e) => e.reason === 'ScaledUp')?.message).toBe(status.lastScale!.reason);
    // 1,030 messages held: the deletion cost is the power of two below, so small moves do not patch the pod.
    await waitFor(() => (c.get({ apiVersion: 'v1', kind: 'Pod', namespace: 'mail', name: 'outbound-a' }) as unknown as { metadata: { annotations?: Record<string, string> } }).metadata.annotations?.['controller.kubernetes.io/pod-deletion-cost'] === '1024', 'the deletion cost');
    // Within the 15 s rate period the next decisions may not add more: still one scale-up.
    await new Promise((r) => setTimeout(r, 2000));
    expect(deploymentReplicas()).toBe(6);
    expect(await upDecisions()).toBe(1);
  });

  it('treats a pod whose /metrics does not answer as the HPA does: idle when scaling up', async () => {
    const c = await setup({ enabled: true, minReplicas: 2, maxReplicas: 10, interval: '1s', targets: { readyMessagesPerReplica: 100 } });
    const busy = await fakePod('outbound-a', { ready: 300, queued: 300 });
    const silent = await fakePod('outbound-b', undefined);
    pods.push(busy, silent);
    await addPod(c, busy);
    await addPod(c, silent);
    // Counted as 0: (300 + 0) / 100 = 3 replicas, not the 6 that ignoring it would ask for.
    await waitFor(() => deploymentReplicas() === 3, 'the Deployment at 3 replicas', 15_000);
    expect(relay().status!.lastScale!.reason).toMatch(/Scaling up from 2 to 3/);
  });

  it('with autoscaling off, replicas follow the MailRelay scale subresource (an HPA or KEDA), and the operator does not fight them', async () => {
    const c = await setup({ enabled: false });
    await request(c, 'PATCH', '/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/outbound/scale', { spec: { replicas: 5 } }, 'application/merge-patch+json');
    await waitFor(() => deploymentReplicas() === 5, 'the Deployment at 5 replicas');
    await new Promise((r) => setTimeout(r, 1500));
    expect(deploymentReplicas()).toBe(5);
    expect(relay().spec.replicas).toBe(5);
    expect(relay().status?.autoscaler).toBeUndefined();
    // The queue over the fleet still shows in status (kubectl's Queue column).
    const pod = await fakePod('outbound-a', { ready: 7, queued: 10 });
    pods.push(pod);
    await addPod(c, pod);
    await waitFor(() => (relay().status as { queueSummary?: string } | undefined)?.queueSummary === '7 due, 3 waiting', 'the queue summary in status', 25_000);
  });

  async function upDecisions(): Promise<number> {
    return (await operator!.metrics.scalingDecisions.get()).values.filter((v) => v.labels.direction === 'up').reduce((n, v) => n + v.value, 0);
  }
});
