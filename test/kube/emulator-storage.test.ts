// The emulator over HTTP: storage of built-in and custom kinds, discovery, resourceVersions and conflicts, generation, lists and label selectors.
import {
  ApisApi,
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  EventsV1Api,
  PolicyV1Api,
  ApiextensionsV1Api,
  loadYaml,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { KubeObject } from './emulator.js';
import { deployment, failure, mailRelay, type Manifest, policyCrd, relayCrd, relayGroup, waitFor } from './fixtures.js';
import { createRelay, customObjects, emulator, kc, merge, objects, postJson, start, useEmulator } from './session.js';

useEmulator();

describe('storage and discovery', () => {
  it('stores the built-in kinds through their typed clients, with the defaults the API server fills in', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    const namespace = 'default';
    await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'relay-config' }, data: { 'relay.yaml': 'x: 1' } } });
    const secret = await core.createNamespacedSecret({ namespace, body: { metadata: { name: 'handoff' }, stringData: { token: 's3cret' } } });
    expect(secret.data).toEqual({ token: Buffer.from('s3cret').toString('base64') });
    expect(secret.type).toBe('Opaque');
    expect(secret.stringData).toBeUndefined();
    const service = await core.createNamespacedService({ namespace, body: { metadata: { name: 'mail' }, spec: { selector: { app: 'relay' }, ports: [{ name: 'submission', port: 587 }] } } });
    expect(service.spec?.clusterIP).toMatch(/^10\.96\.\d+\.\d+$/);
    expect(service.spec?.ports?.[0]).toMatchObject({ protocol: 'TCP', targetPort: 587 });
    await core.createNamespacedEndpoints({ namespace, body: { metadata: { name: 'mail' }, subsets: [] } });
    const pod = await core.createNamespacedPod({ namespace, body: { metadata: { name: 'relay-0' }, spec: { containers: [{ name: 'relay', image: 'mailfleet:latest' }] } } });
    expect(pod.status?.phase).toBe('Pending');
    expect(pod.spec?.containers[0]?.imagePullPolicy).toBe('Always');
    const created = await apps.createNamespacedDeployment({ namespace, body: deployment('relay') as never });
    expect(created.spec?.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } });
    expect(created.spec?.template.spec?.containers[0]).toMatchObject({ imagePullPolicy: 'IfNotPresent', terminationMessagePath: '/dev/termination-log' });
    await kc.makeApiClient(PolicyV1Api).createNamespacedPodDisruptionBudget({ namespace, body: { metadata: { name: 'relay' }, spec: { maxUnavailable: 1, selector: { matchLabels: { app: 'relay' } } } } });
    // client-node's typed clients serialise a MicroTime from a Date with toISOString()'s three
    // fractional digits, which the API server refuses (it wants six): Leases are written as JSON.
    const typedLease = await failure(
      kc.makeApiClient(CoordinationV1Api).createNamespacedLease({
        namespace,
        body: { metadata: { name: 'mailfleet-operator' }, spec: { holderIdentity: 'pod-a', leaseDurationSeconds: 15, renewTime: new Date('2030-01-02T03:04:05.678Z') as never } },
      }),
    );
    expect(typedLease).toMatchObject({ code: 400, status: { reason: 'BadRequest' } });
    expect(typedLease.status.message).toContain('v1.Lease.Spec: v1.LeaseSpec.RenewTime: unmarshalerDecoder: parsing time "2030-01-02T03:04:05.678Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".678Z" as ".000000"');
    const lease = await postJson(`/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`, { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'mailfleet-operator' }, spec: { holderIdentity: 'pod-a', leaseDurationSeconds: 15, renewTime: '2030-01-02T04:04:05.678901+01:00' } });
    expect(lease.code).toBe(201);
    // MicroTime: stored in UTC with its six fractional digits.
    expect(emulator.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace, name: 'mailfleet-operator' })?.spec).toMatchObject({ holderIdentity: 'pod-a', renewTime: '2030-01-02T03:04:05.678901Z' });

    const list = await core.listNamespacedConfigMap({ namespace });
    expect(list.items.map((cm) => cm.metadata?.name)).toEqual(['relay-config']);
    // Typed lists carry no kind or apiVersion on their items, as on a cluster.
    const raw = emulator.list({ apiVersion: 'v1', kind: 'ConfigMap', namespace });
    expect(raw).toHaveLength(1);
    const listed = (await fetch(`${emulator.url}/api/v1/namespaces/default/configmaps`).then((r) => r.json())) as { items: Record<string, unknown>[] };
    expect(listed.items[0]).not.toHaveProperty('kind');
    expect((await apps.readNamespacedDeployment({ namespace, name: 'relay' })).metadata?.uid).toBe(created.metadata?.uid);
  });

  it('keeps namespaces cluster-scoped and refuses content in a namespace that does not exist', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const ns = await core.createNamespace({ body: { metadata: { name: 'mail' } } });
    expect(ns.status?.phase).toBe('Active');
    expect(ns.metadata?.labels).toEqual({ 'kubernetes.io/metadata.name': 'mail' });
    const missing = await failure(core.createNamespacedConfigMap({ namespace: 'nowhere', body: { metadata: { name: 'x' } } }));
    expect(missing.code).toBe(404);
    expect(missing.status.message).toBe('namespaces "nowhere" not found');
  });

  it('shows one Event through core/v1 and events.k8s.io/v1, with the stricter events.k8s.io validation', async () => {
    const eventsV1 = kc.makeApiClient(EventsV1Api);
    const created = await postJson('/apis/events.k8s.io/v1/namespaces/default/events', {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: 'relay.scaled' },
      eventTime: '2030-01-01T00:00:00.123456Z',
      reportingController: 'mailfleet.io/operator',
      reportingInstance: 'operator-0',
      action: 'Scale',
      reason: 'ScaledUp',
      type: 'Normal',
      note: 'scaled to 3',
      regarding: { kind: 'MailRelay', namespace: 'default', name: 'relay', apiVersion: 'mailfleet.io/v1alpha1' },
    });
    expect(created.code).toBe(201);
    const core = kc.makeApiClient(CoreV1Api);
    const [event] = (await core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=relay' })).items;
    expect(event).toMatchObject({ reason: 'ScaledUp', message: 'scaled to 3', reportingComponent: 'mailfleet.io/operator', involvedObject: { kind: 'MailRelay', name: 'relay' } });
    const invalid = await failure(eventsV1.createNamespacedEvent({ namespace: 'default', body: { metadata: { name: 'bad' }, reason: 'X', type: 'Normal' } as never }));
    expect(invalid.code).toBe(422);
    expect(invalid.status.details?.causes?.map((c) => c.field)).toEqual(['eventTime', 'reportingController', 'reportingInstance', 'action']);
  });

  it('serves a custom resource only while its CRD exists, namespaced and cluster-scoped', async () => {
    await start({ crds: [] });
    const custom = customObjects();
    const before = await failure(custom.listNamespacedCustomObject({ ...relayGroup, namespace: 'default' }));
    expect(before.code).toBe(404);
    expect(before.status.message).toBe('the server could not find the requested resource');

    const crds = kc.makeApiClient(ApiextensionsV1Api);
    // The typed client serialises through its models, which know `default` and `x-kubernetes-*` under other
    // names (_default, x_kubernetes_preserve_unknown_fields): a raw manifest must go through loadYaml first.
    for (const crd of [relayCrd, policyCrd]) await crds.createCustomResourceDefinition({ body: loadYaml<V1CustomResourceDefinition>(JSON.stringify(crd)) });
    await createRelay('relay');
    expect((await custom.getNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay' })).spec).toMatchObject({ domain: 'example.test' });
    const policy: Manifest = { apiVersion: 'mailfleet.io/v1alpha1', kind: 'FleetPolicy', metadata: { name: 'global' }, spec: { any: 'thing' } };
    expect((await objects().create(policy)).metadata?.namespace).toBeUndefined();
    expect((await objects().read<Manifest>({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'FleetPolicy', metadata: { name: 'global' } })).spec).toEqual({ any: 'thing' });

    const established = await waitFor(() => (emulator.get({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: 'mailrelays.mailfleet.io' })?.status as { conditions?: { type: string; status: string }[] }) ?.conditions, 'Established');
    expect(established).toContainEqual(expect.objectContaining({ type: 'Established', status: 'True' }));

    await crds.deleteCustomResourceDefinition({ name: 'mailrelays.mailfleet.io' });
    await emulator.settled();
    expect((await failure(custom.listNamespacedCustomObject({ ...relayGroup, namespace: 'default' }))).code).toBe(404);
    const groups = await kc.makeApiClient(ApisApi).getAPIVersions();
    expect(groups.groups.find((g) => g.name === 'mailfleet.io')).toBeDefined();
  });

  it('answers discovery with groups, resources and subresources, which KubernetesObjectApi uses', async () => {
    const resources = (await fetch(`${emulator.url}/apis/mailfleet.io/v1alpha1`).then((r) => r.json())) as { resources: { name: string; kind: string; group?: string; namespaced: boolean }[] };
    expect(resources.resources.filter((r) => r.name.startsWith('mailrelays'))).toEqual([
      expect.objectContaining({ name: 'mailrelays', kind: 'MailRelay', namespaced: true }),
      expect.objectContaining({ name: 'mailrelays/status', kind: 'MailRelay' }),
      expect.objectContaining({ name: 'mailrelays/scale', kind: 'Scale', group: 'autoscaling' }),
    ]);
    const core = await kc.makeApiClient(CoreV1Api).getAPIResources();
    expect(core.resources.map((r) => r.name)).toEqual(expect.arrayContaining(['configmaps', 'secrets', 'services', 'pods', 'pods/status', 'endpoints', 'events', 'namespaces']));
    const groups = await kc.makeApiClient(ApisApi).getAPIVersions();
    expect(groups.groups.map((g) => g.name)).toEqual(expect.arrayContaining(['apps', 'policy', 'coordination.k8s.io', 'events.k8s.io', 'apiextensions.k8s.io', 'mailfleet.io']));
    const created = await objects().create(deployment('relay'));
    expect(created.metadata?.generation).toBe(1);
    expect(emulator.requestCount({ path: '/apis/apps/v1' })).toBe(1);
  });

  it('preloads the ServiceMonitor and DNSEndpoint CRDs only when asked', async () => {
    const serviceMonitor = { apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 'relay', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'relay' } }, endpoints: [{ port: 'metrics' }] } };
    await expect(objects().create(serviceMonitor)).rejects.toThrow(/monitoring.coreos.com\/v1/);
    await start({ thirdPartyCrds: ['ServiceMonitor', 'DNSEndpoint'] });
    expect((await objects().create(serviceMonitor)).spec).toEqual(serviceMonitor.spec);
    const endpoint = await objects().create<Manifest>({ apiVersion: 'externaldns.k8s.io/v1alpha1', kind: 'DNSEndpoint', metadata: { name: 'dkim', namespace: 'default' }, spec: { endpoints: [{ dnsName: 'sel._domainkey.example.test', recordType: 'TXT', targets: ['v=DKIM1; k=ed25519; p=abc'] }] } });
    expect(endpoint.metadata?.generation).toBe(1);
  });
});

describe('resourceVersion and conflicts', () => {
  it('bumps one global resourceVersion on every write and reports it on lists', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const first = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'a' } } });
    const relay = await createRelay('relay');
    const second = await core.replaceNamespacedConfigMap({ namespace: 'default', name: 'a', body: { ...first, data: { k: 'v' } } });
    const versions = [first, relay, second].map((o) => Number(o.metadata?.resourceVersion));
    expect(versions[1]).toBeGreaterThan(versions[0] as number);
    expect(versions[2]).toBeGreaterThan(versions[1] as number);
    const list = await core.listNamespacedConfigMap({ namespace: 'default' });
    expect(list.metadata?.resourceVersion).toBe(emulator.resourceVersion());
    expect(Number(emulator.resourceVersion())).toBe(versions[2]);
  });

  it('answers a replace with a stale resourceVersion with 409 Conflict', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const original = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'config' }, data: { a: '1' } } });
    await core.replaceNamespacedConfigMap({ namespace: 'default', name: 'config', body: { ...original, data: { a: '2' } } });
    const stale = await failure(core.replaceNamespacedConfigMap({ namespace: 'default', name: 'config', body: { ...original, data: { a: '3' } } }));
    expect(stale.code).toBe(409);
    expect(stale.status).toMatchObject({
      kind: 'Status',
      status: 'Failure',
      reason: 'Conflict',
      message: 'Operation cannot be fulfilled on configmaps "config": the object has been modified; please apply your changes to the latest version and try again',
      details: { name: 'config', kind: 'configmaps' },
    });
    const relay = await createRelay('relay');
    const staleRelay = await failure(customObjects().replaceNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', body: { ...relay, metadata: { ...relay.metadata, resourceVersion: '1' } } }));
    expect(staleRelay.status.message).toMatch(/^Operation cannot be fulfilled on mailrelays.mailfleet.io "relay": the object has been modified/);
    // Custom resources, unlike built-ins, refuse an update without a resourceVersion.
    const unconditional = await failure(customObjects().replaceNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', body: mailRelay('relay') }));
    expect(unconditional.status.message).toBe('MailRelay.mailfleet.io "relay" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update');
  });

  it('refuses a duplicate name with 409 AlreadyExists and a missing object with 404 NotFound, and sets uid and creationTimestamp', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const created = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'config' } } });
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata?.creationTimestamp).toBeInstanceOf(Date);
    const duplicate = await failure(core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'config' } } }));
    expect(duplicate.code).toBe(409);
    expect(duplicate.status).toMatchObject({ reason: 'AlreadyExists', message: 'configmaps "config" already exists' });
    const missing = await failure(kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ namespace: 'default', name: 'ghost' }));
    expect(missing.status).toMatchObject({ code: 404, reason: 'NotFound', message: 'deployments.apps "ghost" not found', details: { name: 'ghost', group: 'apps', kind: 'deployments' } });
    // A read object sent back to create still carries its resourceVersion: the API server refuses it.
    const resent = await failure(core.createNamespacedConfigMap({ namespace: 'default', body: { ...created, metadata: { ...created.metadata, name: 'copy' } } }));
    expect(resent.code).toBe(500);
  });
});

describe('generation', () => {
  it('starts custom resources at 1 and bumps generation for spec changes only', async () => {
    const custom = customObjects();
    const created = await createRelay('relay');
    expect(created.metadata.generation).toBe(1);
    const labelled = (await custom.patchNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', body: { metadata: { labels: { tier: 'edge' } } } }, merge)) as KubeObject;
    expect(labelled.metadata.generation).toBe(1);
    const withStatus = (await custom.patchNamespacedCustomObjectStatus({ ...relayGroup, namespace: 'default', name: 'relay', body: { status: { phase: 'Ready' } } }, merge)) as KubeObject;
    expect(withStatus.metadata.generation).toBe(1);
    const respecified = (await custom.patchNamespacedCustomObject({ ...relayGroup, namespace: 'default', name: 'relay', body: { spec: { replicas: 4 } } }, merge)) as KubeObject;
    expect(respecified.metadata.generation).toBe(2);
  });

  it('bumps a Deployment generation for spec and annotation changes, as the Deployment strategy does, but not for labels', async () => {
    const apps = kc.makeApiClient(AppsV1Api);
    await apps.createNamespacedDeployment({ namespace: 'default', body: deployment('relay') as never });
    const patch = (body: object) => apps.patchNamespacedDeployment({ namespace: 'default', name: 'relay', body }, merge);
    expect((await patch({ metadata: { labels: { tier: 'edge' } } })).metadata?.generation).toBe(1);
    expect((await patch({ spec: { replicas: 3 } })).metadata?.generation).toBe(2);
    expect((await patch({ metadata: { annotations: { note: 'x' } } })).metadata?.generation).toBe(3);
  });
});

describe('lists and dry runs', () => {
  it('pages a list with limit and continue', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    for (const name of ['a', 'b', 'c']) await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name } } });
    const first = await core.listNamespacedConfigMap({ namespace: 'default', limit: 2 });
    expect(first.items.map((cm) => cm.metadata?.name)).toEqual(['a', 'b']);
    expect(first.metadata?.remainingItemCount).toBe(1);
    const rest = await core.listNamespacedConfigMap({ namespace: 'default', limit: 2, _continue: first.metadata?._continue as string });
    expect(rest.items.map((cm) => cm.metadata?.name)).toEqual(['c']);
    expect(rest.metadata?._continue).toBeUndefined();
  });

  it('answers a dryRun=All write without storing it', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const before = emulator.resourceVersion();
    const dry = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'dry' }, data: { k: 'v' } }, dryRun: 'All' });
    expect(dry.metadata?.uid).toBeDefined();
    expect(emulator.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name: 'dry' })).toBeUndefined();
    expect(emulator.resourceVersion()).toBe(before);
  });
});

describe('label selectors', () => {
  it('selects with =, ==, !=, in, notin, exists and !key on list and deletecollection', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const labels: Record<string, Record<string, string>> = { a: { app: 'relay', tier: 'edge' }, b: { app: 'relay', tier: 'core' }, c: { app: 'dns' }, d: {} };
    for (const [name, l] of Object.entries(labels)) await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name, labels: l } } });
    const names = async (labelSelector: string) => (await core.listNamespacedConfigMap({ namespace: 'default', labelSelector })).items.map((cm) => cm.metadata?.name);
    expect(await names('app=relay')).toEqual(['a', 'b']);
    expect(await names('app==relay,tier=core')).toEqual(['b']);
    expect(await names('tier!=edge')).toEqual(['b', 'c', 'd']);
    expect(await names('tier in (edge, core)')).toEqual(['a', 'b']);
    expect(await names('app notin (relay)')).toEqual(['c', 'd']);
    expect(await names('tier')).toEqual(['a', 'b']);
    expect(await names('!tier,app')).toEqual(['c']);
    const malformed = await failure(core.listNamespacedConfigMap({ namespace: 'default', labelSelector: 'app in relay' }));
    expect(malformed.code).toBe(400);
    await core.deleteCollectionNamespacedConfigMap({ namespace: 'default', labelSelector: 'app=relay' });
    expect(await names('')).toEqual(['c', 'd']);
    const unsupportedField = await failure(core.listNamespacedConfigMap({ namespace: 'default', fieldSelector: 'data.x=1' }));
    expect(unsupportedField.status.message).toBe('field label not supported: data.x');
  });
});
