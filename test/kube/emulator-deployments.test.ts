// The emulator over HTTP: Deployment status, as reported when asked to or as v1.20's controller rolls out without a kubelet.
import { AppsV1Api } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { KubeObject } from './emulator.js';
import { deployment, waitFor, watchEvents } from './fixtures.js';
import { emulator, kc, merge, start, strategic, useEmulator } from './session.js';

useEmulator();

describe('Deployment availability', () => {
  it('reports every Deployment available for its generation when asked to', async () => {
    await start({ deploymentsBecomeAvailable: { afterMs: 5 } });
    const apps = kc.makeApiClient(AppsV1Api);
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('relay', 2) as never });
    const ready = await waitFor(async () => {
      const d = await apps.readNamespacedDeployment({ namespace: 'default', name: 'relay' });
      return d.status?.readyReplicas === 2 && d;
    }, 'two ready replicas');
    expect(ready.status).toMatchObject({ observedGeneration: 1, replicas: 2, availableReplicas: 2, updatedReplicas: 2 });
    expect(ready.status?.conditions?.find((c) => c.type === 'Available')?.status).toBe('True');
    await apps.patchNamespacedDeploymentScale({ namespace: 'default', name: 'relay', body: { spec: { replicas: 3 } } }, merge);
    await emulator.settled();
    expect((await apps.readNamespacedDeployment({ namespace: 'default', name: 'relay' })).status).toMatchObject({ observedGeneration: 2, readyReplicas: 3 });
  });

  it('rolls Deployments out and leaves them unavailable, as v1.20\'s controller does without a kubelet, when asked to', async () => {
    await start({ deploymentsUnavailable: true });
    const apps = kc.makeApiClient(AppsV1Api);
    const watch = await watchEvents(kc, '/apis/apps/v1/namespaces/default/deployments', { resourceVersion: emulator.resourceVersion() });
    const body = deployment('relay', 4);
    body.spec!.progressDeadlineSeconds = 1;
    await apps.createNamespacedDeployment({ namespace: 'default', body: body as never });
    // The statuses kube-controller-manager v1.20.2 writes, in order (times aside).
    const shape = (o: KubeObject) => ({ revision: o.metadata.annotations?.['deployment.kubernetes.io/revision'], ...JSON.parse(JSON.stringify(o.status ?? {}, (k, v: unknown) => (k === 'lastUpdateTime' || k === 'lastTransitionTime' ? undefined : v))) });
    const rs = (message: string) => message.replace(/relay-[a-z0-9]+/, 'relay-HASH');
    const unavailable = { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'Deployment does not have minimum availability.' };
    const events = await watch.next(5);
    expect(events.map((e) => e.type)).toEqual(['ADDED', 'MODIFIED', 'MODIFIED', 'MODIFIED', 'MODIFIED']);
    const statuses = events.map((e) => shape(e.object)).map((s) => ({ ...s, conditions: s.conditions?.map((c: { message: string }) => ({ ...c, message: rs(c.message) })) }));
    expect(statuses.slice(1)).toEqual([
      { revision: '1', conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetCreated', message: 'Created new replica set "relay-HASH"' }] },
      { revision: '1', observedGeneration: 1, unavailableReplicas: 4, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetCreated', message: 'Created new replica set "relay-HASH"' }, unavailable] },
      { revision: '1', observedGeneration: 1, replicas: 4, updatedReplicas: 4, unavailableReplicas: 4, conditions: [unavailable, { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: 'ReplicaSet "relay-HASH" is progressing.' }] },
      { revision: '1', observedGeneration: 1, replicas: 4, updatedReplicas: 4, unavailableReplicas: 4, conditions: [unavailable, { type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "relay-HASH" has timed out progressing.' }] },
    ]);
    watch.stop();
    expect(events[1]?.object.metadata.generation).toBe(1);
    // A new template surges one pod and scales the unhealthy old ones down by maxUnavailable.
    await apps.patchNamespacedDeployment({ namespace: 'default', name: 'relay', body: { spec: { template: { spec: { containers: [{ name: 'relay', image: 'mailfleet:2.0' }] } } } } }, strategic);
    const rolled = await waitFor(async () => {
      const d = (await apps.readNamespacedDeployment({ namespace: 'default', name: 'relay' })) as unknown as KubeObject;
      return (d.status as { updatedReplicas?: number }).updatedReplicas === 2 && d;
    }, 'the rollout to stall');
    await emulator.settled();
    expect(shape((await apps.readNamespacedDeployment({ namespace: 'default', name: 'relay' })) as unknown as KubeObject)).toMatchObject({ revision: '2', observedGeneration: 2, replicas: 5, updatedReplicas: 2, unavailableReplicas: 5 });
    expect(rolled.metadata.generation).toBe(2);
    // Scaled mid-rollout, the ReplicaSets grow in proportion (3+2 -> 5+3 with maxSurge 2).
    await apps.patchNamespacedDeploymentScale({ namespace: 'default', name: 'relay', body: { spec: { replicas: 6 } } }, merge);
    await waitFor(async () => ((await apps.readNamespacedDeployment({ namespace: 'default', name: 'relay' })).status?.replicas === 8), 'eight pods');
    await emulator.settled();
    expect((await apps.readNamespacedDeployment({ namespace: 'default', name: 'relay' })).status).toMatchObject({ observedGeneration: 3, replicas: 8, updatedReplicas: 3, unavailableReplicas: 8 });
    // At zero it is complete and available.
    await apps.patchNamespacedDeploymentScale({ namespace: 'default', name: 'relay', body: { spec: { replicas: 0 } } }, merge);
    const zero = await waitFor(async () => {
      const d = await apps.readNamespacedDeployment({ namespace: 'default', name: 'relay' });
      return d.status?.conditions?.some((c) => c.reason === 'NewReplicaSetAvailable') && d;
    }, 'an empty Deployment');
    expect(shape(zero as unknown as KubeObject)).toEqual({
      revision: '2',
      observedGeneration: 4,
      conditions: [
        { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'Deployment has minimum availability.' },
        { type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable', message: expect.stringMatching(/^ReplicaSet "relay-[a-z0-9]+" has successfully progressed\.$/) },
      ],
    });
  });

  it('leaves Deployment status alone by default and reports every change in process', async () => {
    const changes: string[] = [];
    const unsubscribe = emulator.onChange((change) => changes.push(`${change.type} ${change.kind} ${change.object.metadata.name}`));
    const apps = kc.makeApiClient(AppsV1Api);
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('relay') as never });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await emulator.settled();
    expect((await apps.readNamespacedDeployment({ namespace: 'default', name: 'relay' })).status).toBeUndefined();
    expect(changes).toEqual(['ADDED Deployment relay']);
    unsubscribe();
  });
});
