// The emulator over HTTP: the status and scale subresources, and merge, JSON, strategic and server-side apply patches.
import { AppsV1Api, CoreV1Api, PatchStrategy } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { KubeObject } from './emulator.js';
import { deployment, failure, mailRelay, relayGroup, watchEvents } from './fixtures.js';
import { apply, createRelay, customObjects, emulator, kc, merge, objects, strategic, useEmulator } from './session.js';

useEmulator();

describe('status and scale subresources', () => {
  it('ignores status on the main resource and changes only status through /status', async () => {
    const custom = customObjects();
    await createRelay('relay');
    const ignored = (await custom.patchNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', body: { status: { phase: 'Hacked' } } }, merge)) as KubeObject;
    expect(ignored.status).toBeUndefined();
    const current = (await custom.getNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay' })) as KubeObject;
    const updated = (await custom.replaceNamespacedCustomObjectStatus({
      ...relayGroup,
      namespace: 'default',
      name: 'relay',
      body: { ...current, spec: { domain: 'ignored.test' }, metadata: { ...current.metadata, labels: { ignored: 'yes' } }, status: { phase: 'Ready' } },
    })) as KubeObject;
    expect(updated.status).toEqual({ phase: 'Ready' });
    expect(updated.spec).toMatchObject({ domain: 'example.test' });
    expect(updated.metadata.labels).toBeUndefined();
    const kept = (await custom.replaceNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', body: { ...updated, status: { phase: 'Hacked' } } })) as KubeObject;
    expect(kept.status).toEqual({ phase: 'Ready' });

    const apps = kc.makeApiClient(AppsV1Api);
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('relay') as never });
    const main = await apps.patchNamespacedDeployment({ namespace: 'default', name: 'relay', body: { status: { readyReplicas: 9 } } }, merge);
    expect(main.status).toBeUndefined();
    const status = await apps.patchNamespacedDeploymentStatus({ namespace: 'default', name: 'relay', body: { status: { readyReplicas: 1, replicas: 1 } } }, merge);
    expect(status.status).toMatchObject({ readyReplicas: 1 });
    expect(status.metadata?.generation).toBe(1);
    const replaced = await apps.replaceNamespacedDeployment({ namespace: 'default', name: 'relay', body: { ...status, status: { readyReplicas: 5 } } });
    expect(replaced.status?.readyReplicas).toBe(1);
  });

  it('reads, replaces and patches replicas through /scale for custom resources and Deployments', async () => {
    const custom = customObjects();
    await createRelay('relay', { domain: 'example.test', replicas: 2 });
    await custom.patchNamespacedCustomObjectStatus({ ...relayGroup, namespace: 'default', name: 'relay', body: { status: { replicas: 2, selector: 'app=relay' } } }, merge);
    const scale = (await custom.getNamespacedCustomObjectScale({ ...relayGroup, namespace: 'default', name: 'relay' })) as KubeObject;
    expect(scale).toMatchObject({ apiVersion: 'autoscaling/v1', kind: 'Scale', spec: { replicas: 2 }, status: { replicas: 2, selector: 'app=relay' } });
    const replaced = (await custom.replaceNamespacedCustomObjectScale({ ...relayGroup, namespace: 'default', name: 'relay', body: { ...scale, spec: { replicas: 5 } } })) as KubeObject;
    expect(replaced.spec).toEqual({ replicas: 5 });
    const relay = emulator.get({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: 'default', name: 'relay' });
    expect(relay?.spec).toMatchObject({ replicas: 5 });
    expect(relay?.metadata.generation).toBe(2);
    const stale = await failure(custom.replaceNamespacedCustomObjectScale({ ...relayGroup, namespace: 'default', name: 'relay', body: { ...scale, spec: { replicas: 6 } } }));
    expect(stale.code).toBe(409);

    const apps = kc.makeApiClient(AppsV1Api);
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('relay', 2) as never });
    const deploymentScale = await apps.readNamespacedDeploymentScale({ namespace: 'default', name: 'relay' });
    expect(deploymentScale.spec?.replicas).toBe(2);
    expect(deploymentScale.status?.selector).toBe('app=relay');
    await apps.replaceNamespacedDeploymentScale({ namespace: 'default', name: 'relay', body: { metadata: { name: 'relay' }, spec: { replicas: 4 } } });
    const patched = await apps.patchNamespacedDeploymentScale({ namespace: 'default', name: 'relay', body: { spec: { replicas: 7 } } }, merge);
    expect(patched.spec?.replicas).toBe(7);
    expect((await apps.readNamespacedDeployment({ namespace: 'default', name: 'relay' })).spec?.replicas).toBe(7);
    const negative = await failure(apps.replaceNamespacedDeploymentScale({ namespace: 'default', name: 'relay', body: { metadata: { name: 'relay' }, spec: { replicas: -1 } } }));
    expect(negative.code).toBe(422);
  });
});

describe('patches', () => {
  it('applies merge patches and JSON patches, and answers a failed JSON patch test with 422', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'config', labels: { a: '1', b: '2' } }, data: { x: '1', y: '2' } } });
    const merged = await core.patchNamespacedConfigMap({ namespace: 'default', name: 'config', body: { metadata: { labels: { b: null, c: '3' } }, data: { y: '20' } } }, merge);
    expect(merged.metadata?.labels).toEqual({ a: '1', c: '3' });
    expect(merged.data).toEqual({ x: '1', y: '20' });
    // client-node's typed patch methods send application/json-patch+json unless told otherwise.
    const patched = await core.patchNamespacedConfigMap({
      namespace: 'default',
      name: 'config',
      body: [
        { op: 'test', path: '/data/x', value: '1' },
        { op: 'replace', path: '/data/x', value: '10' },
        { op: 'add', path: '/data/z', value: '3' },
        { op: 'remove', path: '/metadata/labels/a' },
      ],
    });
    expect(patched.data).toEqual({ x: '10', y: '20', z: '3' });
    expect(patched.metadata?.labels).toEqual({ c: '3' });
    const failed = await failure(core.patchNamespacedConfigMap({ namespace: 'default', name: 'config', body: [{ op: 'test', path: '/data/x', value: 'nope' }] }));
    expect(failed.code).toBe(422);
  });

  it('merges containers, ports and env by key in a strategic merge patch, and refuses it for custom resources', async () => {
    const apps = kc.makeApiClient(AppsV1Api);
    const base = deployment('relay');
    (base.spec as { template: { spec: { containers: object[] } } }).template.spec.containers = [
      { name: 'relay', image: 'mailfleet:1.0', ports: [{ containerPort: 25 }], env: [{ name: 'A', value: '1' }] },
      { name: 'exporter', image: 'exporter:1' },
    ];
    await apps.createNamespacedDeployment({ namespace: 'default', body: base as never });
    const patched = await apps.patchNamespacedDeployment(
      {
        namespace: 'default',
        name: 'relay',
        body: {
          spec: {
            template: {
              spec: {
                containers: [{ name: 'relay', image: 'mailfleet:1.1', ports: [{ containerPort: 587 }], env: [{ name: 'B', value: '2' }, { name: 'A', $patch: 'delete' }] }],
              },
            },
          },
        },
      },
      strategic,
    );
    const containers = patched.spec?.template.spec?.containers ?? [];
    expect(containers.map((c) => [c.name, c.image])).toEqual([['relay', 'mailfleet:1.1'], ['exporter', 'exporter:1']]);
    expect(containers[0]?.ports?.map((p) => p.containerPort)).toEqual([25, 587]);
    expect(containers[0]?.env).toEqual([{ name: 'B', value: '2' }]);

    await createRelay('relay');
    const refused = await failure(objects().patch(mailRelay('relay', { replicas: 3 }), undefined, undefined, undefined, undefined, PatchStrategy.StrategicMergePatch));
    expect(refused.code).toBe(415);
  });

  it('creates with server-side apply, records managedFields, and removes what the manager no longer applies', async () => {
    const applied = await objects().patch(mailRelay('relay', { domain: 'example.test', replicas: 3, labels: { a: '1', b: '2' } }), undefined, undefined, 'mailfleet-operator', undefined, PatchStrategy.ServerSideApply);
    expect(applied.spec).toMatchObject({ domain: 'example.test', replicas: 3, mode: 'mx', labels: { a: '1', b: '2' } });
    expect(emulator.requests().at(-1)).toMatchObject({ verb: 'patch', contentType: 'application/apply-patch+yaml', fieldManager: 'mailfleet-operator', code: 201 });
    expect(applied.metadata?.managedFields).toEqual([
      expect.objectContaining({ manager: 'mailfleet-operator', operation: 'Apply', apiVersion: 'mailfleet.io/v1alpha1', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { 'f:domain': {}, 'f:replicas': {}, 'f:labels': { 'f:a': {}, 'f:b': {} } } } }),
    ]);
    // Another manager's label survives; the operator's dropped label and field go.
    await customObjects().patchNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', body: { spec: { labels: { c: '3' } } }, fieldManager: 'kubectl-edit' }, merge);
    const reapplied = await objects().patch(mailRelay('relay', { domain: 'example.test', labels: { a: '1' } }), undefined, undefined, 'mailfleet-operator', undefined, PatchStrategy.ServerSideApply);
    expect(reapplied.spec).toEqual({ domain: 'example.test', mode: 'mx', replicas: 2, limits: { perMinute: 600 }, labels: { a: '1', c: '3' } });
    expect(reapplied.metadata?.managedFields?.map((m) => [m.manager, m.operation])).toEqual([
      ['mailfleet-operator', 'Apply'],
      ['kubectl-edit', 'Update'],
    ]);
  });

  it('refuses an apply that changes a field another manager owns with 409, unless forced', async () => {
    const applyAs = (manager: string, spec: Record<string, unknown>, force?: boolean) =>
      objects().patch(mailRelay('relay', spec), undefined, undefined, manager, force, PatchStrategy.ServerSideApply);
    await applyAs('mailfleet-operator', { domain: 'example.test', replicas: 2 });
    await applyAs('autoscaler', { domain: 'example.test', replicas: 2 }); // same value: shared ownership, no conflict
    const conflict = await failure(applyAs('gitops', { domain: 'other.test', replicas: 4 }));
    expect(conflict.code).toBe(409);
    expect(conflict.status.reason).toBe('Conflict');
    expect(conflict.status.message).toBe(
      'Apply failed with 4 conflicts: conflicts with "autoscaler":\n- .spec.domain\n- .spec.replicas\nconflicts with "mailfleet-operator":\n- .spec.domain\n- .spec.replicas',
    );
    expect(conflict.status.details?.causes).toContainEqual({ reason: 'FieldManagerConflict', message: 'conflict with "autoscaler"', field: '.spec.replicas' });
    const forced = await applyAs('gitops', { domain: 'example.test', replicas: 4 }, true);
    expect(forced.spec).toMatchObject({ replicas: 4 });
    const operatorFields = forced.metadata?.managedFields?.find((m) => m.manager === 'mailfleet-operator')?.fieldsV1;
    expect(operatorFields).toEqual({ 'f:spec': { 'f:domain': {} } });

    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'config' }, data: { k: 'edited' } }, fieldManager: 'kubectl-edit' });
    const configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'config', namespace: 'default' }, data: { k: 'applied' } };
    const againstUpdate = await failure(objects().patch(configMap, undefined, undefined, 'mailfleet-operator', undefined, PatchStrategy.ServerSideApply));
    expect(againstUpdate.status.message).toMatch(/^Apply failed with 1 conflict: conflict with "kubectl-edit" using v1 at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: \.data\.k$/);
  });

  it('treats a repeated identical apply as a no-op: same resourceVersion, no watch event', async () => {
    const desired = deployment('relay', 2);
    const first = await objects().patch(desired, undefined, undefined, 'mailfleet-operator', true, PatchStrategy.ServerSideApply);
    const watch = await watchEvents(kc, '/apis/apps/v1/namespaces/default/deployments', { resourceVersion: first.metadata?.resourceVersion as string });
    const second = await objects().patch(deployment('relay', 2), undefined, undefined, 'mailfleet-operator', true, PatchStrategy.ServerSideApply);
    expect(second.metadata?.resourceVersion).toBe(first.metadata?.resourceVersion);
    await objects().patch(deployment('relay', 3), undefined, undefined, 'mailfleet-operator', true, PatchStrategy.ServerSideApply);
    const [event] = await watch.next(1);
    expect(event?.type).toBe('MODIFIED');
    expect((event?.object.spec as { replicas: number }).replicas).toBe(3);
    watch.stop();
    // Defaults the server added are not owned: applying without them does not remove them.
    expect(second.spec?.template?.spec?.containers?.[0]?.terminationMessagePath).toBe('/dev/termination-log');
  });

  it('applies status through /status with its own field manager', async () => {
    await createRelay('relay');
    const custom = customObjects();
    const status = { apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', metadata: { name: 'relay' }, status: { replicas: 2, conditions: [{ type: 'Ready', status: 'True', observedGeneration: 1 }] } };
    const applied = (await custom.patchNamespacedCustomObjectStatus({ ...relayGroup, namespace: 'default', name: 'relay', body: status, fieldManager: 'mailfleet-operator', force: true }, apply)) as KubeObject;
    expect(applied.status).toEqual(status.status);
    expect(applied.metadata.managedFields).toContainEqual(
      expect.objectContaining({ manager: 'mailfleet-operator', operation: 'Apply', subresource: 'status', fieldsV1: { 'f:status': { 'f:replicas': {}, 'f:conditions': { 'k:{"type":"Ready"}': { '.': {}, 'f:type': {}, 'f:status': {}, 'f:observedGeneration': {} } } } } }),
    );
    const withoutReplicas = { ...status, status: { conditions: status.status.conditions } };
    const reapplied = (await custom.patchNamespacedCustomObjectStatus({ ...relayGroup, namespace: 'default', name: 'relay', body: withoutReplicas, fieldManager: 'mailfleet-operator', force: true }, apply)) as KubeObject;
    expect(reapplied.status).toEqual({ conditions: status.status.conditions });
    expect(reapplied.metadata.generation).toBe(1);
  });
});
