// The emulator over HTTP: deletion with finalizers, graceful Pod deletion, the garbage collector and namespace teardown.
import { CoreV1Api } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { KubeObject } from './emulator.js';
import { failure, relayGroup, watchEvents } from './fixtures.js';
import { createRelay, customObjects, emulator, kc, merge, useEmulator } from './session.js';

useEmulator();

describe('finalizers', () => {
  it('keeps a deleted object with finalizers until the last one is removed, and refuses new ones meanwhile', async () => {
    const custom = customObjects();
    await createRelay('relay');
    await custom.patchNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', body: { metadata: { finalizers: ['mailfleet.io/dns'] } } }, merge);
    const watch = await watchEvents(kc, '/apis/mailfleet.io/v1alpha1/namespaces/default/mailrelays', { resourceVersion: emulator.resourceVersion() });
    const deleting = (await custom.deleteNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay' })) as KubeObject;
    expect(deleting.metadata.deletionTimestamp).toBeDefined();
    expect(deleting.metadata.deletionGracePeriodSeconds).toBe(0);
    const [marked] = await watch.next(1);
    expect(marked?.type).toBe('MODIFIED');
    expect(marked?.object.metadata.deletionTimestamp).toBe(deleting.metadata.deletionTimestamp);

    const added = await failure(custom.patchNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', body: { metadata: { finalizers: ['mailfleet.io/dns', 'other'] } } }, merge));
    expect(added.code).toBe(422);
    expect(added.status.message).toBe('MailRelay.mailfleet.io "relay" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"other"}');

    await custom.patchNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', body: { metadata: { finalizers: null } } }, merge);
    const events = await watch.next(3);
    expect(events.map((e) => e.type)).toEqual(['MODIFIED', 'MODIFIED', 'DELETED']);
    expect((await failure(custom.getNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay' }))).code).toBe(404);
    watch.stop();
  });
});

describe('pod deletion', () => {
  it('deletes an unbound Pod at once and a bound one gracefully, until a delete with grace 0', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const spec = { containers: [{ name: 'relay', image: 'mailfleet:1.0' }] };
    await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'pending' }, spec } });
    await core.createNamespacedPod({ namespace: 'default', body: { metadata: { name: 'running' }, spec: { ...spec, nodeName: 'node-a', terminationGracePeriodSeconds: 60 } } });
    // Pods answer DELETE with the Pod itself rather than a Status.
    expect((await core.deleteNamespacedPod({ namespace: 'default', name: 'pending' })).metadata?.name).toBe('pending');
    expect(emulator.get({ apiVersion: 'v1', kind: 'Pod', namespace: 'default', name: 'pending' })).toBeUndefined();
    const terminating = await core.deleteNamespacedPod({ namespace: 'default', name: 'running' });
    expect(terminating.metadata?.deletionGracePeriodSeconds).toBe(60);
    expect(terminating.metadata?.deletionTimestamp?.getTime()).toBeGreaterThan(Date.now() + 50_000);
    await core.deleteNamespacedPod({ namespace: 'default', name: 'running', gracePeriodSeconds: 0 });
    expect(emulator.get({ apiVersion: 'v1', kind: 'Pod', namespace: 'default', name: 'running' })).toBeUndefined();
  });
});

describe('garbage collection', () => {
  function ownedBy(owner: KubeObject, blockOwnerDeletion = false) {
    const { apiVersion, kind } = owner;
    return [{ apiVersion: apiVersion as string, kind: kind as string, name: owner.metadata.name as string, uid: owner.metadata.uid as string, controller: true, blockOwnerDeletion }];
  }

  it('deletes dependents in the background, recursively, and keeps a dependent another owner still holds', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const relay = await createRelay('relay');
    const other = await createRelay('other');
    const config = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'relay-config', ownerReferences: ownedBy(relay) } } });
    await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'nested', ownerReferences: ownedBy({ apiVersion: 'v1', kind: 'ConfigMap', metadata: config.metadata as KubeObject['metadata'] }) } } });
    await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 'shared', ownerReferences: [...ownedBy(relay), { ...ownedBy(other)[0]!, controller: false }] } } });
    await customObjects().deleteNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay' });
    await emulator.settled();
    expect((await failure(core.readNamespacedConfigMap({ namespace: 'default', name: 'relay-config' }))).code).toBe(404);
    expect((await failure(core.readNamespacedSecret({ namespace: 'default', name: 'nested' }))).code).toBe(404);
    const shared = await core.readNamespacedSecret({ namespace: 'default', name: 'shared' });
    expect(shared.metadata?.ownerReferences?.map((r) => r.name)).toEqual(['other']);
  });

  it('orphans dependents with propagationPolicy Orphan', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const relay = await createRelay('relay');
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'relay-config', ownerReferences: ownedBy(relay) } } });
    await customObjects().deleteNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', propagationPolicy: 'Orphan' });
    await emulator.settled();
    const orphan = await core.readNamespacedConfigMap({ namespace: 'default', name: 'relay-config' });
    expect(orphan.metadata?.ownerReferences).toBeUndefined();
  });

  it('holds a Foreground deletion until blocking dependents, finalizers included, are gone', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const relay = await createRelay('relay');
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'held', finalizers: ['mailfleet.io/drain'], ownerReferences: ownedBy(relay, true) } } });
    await customObjects().deleteNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', propagationPolicy: 'Foreground' });
    await emulator.settled();
    const waiting = emulator.get({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: 'default', name: 'relay' });
    expect(waiting?.metadata.finalizers).toEqual(['foregroundDeletion']);
    expect(waiting?.metadata.deletionTimestamp).toBeDefined();
    const held = await core.readNamespacedConfigMap({ namespace: 'default', name: 'held' });
    expect(held.metadata?.deletionTimestamp).toBeDefined();
    await core.patchNamespacedConfigMap({ namespace: 'default', name: 'held', body: { metadata: { finalizers: null } } }, merge);
    await emulator.settled();
    expect(emulator.get({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: 'default', name: 'relay' })).toBeUndefined();
  });

  it('empties a deleted namespace before removing it, refusing new content meanwhile', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: 'mail' } } });
    await core.createNamespacedConfigMap({ namespace: 'mail', body: { metadata: { name: 'config' } } });
    await core.createNamespacedConfigMap({ namespace: 'mail', body: { metadata: { name: 'held', finalizers: ['mailfleet.io/drain'] } } });
    const terminating = await core.deleteNamespace({ name: 'mail' });
    expect((terminating as { status?: { phase?: string } }).status?.phase).toBe('Terminating');
    await emulator.settled();
    expect(emulator.list({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'mail' }).map((cm) => cm.metadata.name)).toEqual(['held']);
    const refused = await failure(core.createNamespacedConfigMap({ namespace: 'mail', body: { metadata: { name: 'late' } } }));
    expect(refused.code).toBe(403);
    expect(refused.status.message).toBe('configmaps "late" is forbidden: unable to create new content in namespace mail because it is being terminated');
    await core.patchNamespacedConfigMap({ namespace: 'mail', name: 'held', body: { metadata: { finalizers: null } } }, merge);
    await emulator.settled();
    expect((await failure(core.readNamespace({ name: 'mail' }))).code).toBe(404);
    expect(emulator.list({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'mail' })).toEqual([]);
  });
});
