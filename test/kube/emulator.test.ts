/**
 * The emulator against the real @kubernetes/client-node over HTTP: each test drives it as a
 * controller would and asserts what a controller would see.
 */
import {
  ApisApi,
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  KubernetesObjectApi,
  ListWatch,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  ApiextensionsV1Api,
  Watch,
  loadYaml,
  type KubeConfig,
  type V1ConfigMap,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startKubeEmulator, type KubeEmulator, type KubeObject } from './emulator.js';
import { deployment, failure, mailRelay, type Manifest, policyCrd, relayCrd, relayGroup, type StatusBody, waitFor, watchEvents } from './fixtures.js';

let emulator: KubeEmulator;
let kc: KubeConfig;

async function start(options: Parameters<typeof startKubeEmulator>[0] = {}): Promise<void> {
  await emulator?.stop();
  emulator = await startKubeEmulator({ crds: [relayCrd, policyCrd], ...options });
  kc = emulator.kubeConfig();
}

beforeEach(() => start());
afterEach(() => emulator.stop());

const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const strategic = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
const apply = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

function objects(): KubernetesObjectApi {
  return KubernetesObjectApi.makeApiClient(kc);
}

function customObjects(): CustomObjectsApi {
  return kc.makeApiClient(CustomObjectsApi);
}

/** A POST of raw JSON (what the operator's client sends): the status code and the parsed body. */
async function postJson(path: string, body: unknown): Promise<{ code: number; body: Record<string, unknown> }> {
  const res = await fetch(`${emulator.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return { code: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function createRelay(name: string, spec?: Record<string, unknown>): Promise<KubeObject> {
  return (await customObjects().createNamespacedCustomObject({ ...relayGroup, namespace: 'default', body: mailRelay(name, spec) })) as KubeObject;
}

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

describe('watches', () => {
  it('streams ADDED, MODIFIED and DELETED with resourceVersions, in one namespace and across all', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: 'other' } } });
    const start = emulator.resourceVersion();
    const inDefault = await watchEvents(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: start });
    const everywhere = await watchEvents(kc, '/api/v1/configmaps', { resourceVersion: start });
    const created = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'a' } } });
    await core.createNamespacedConfigMap({ namespace: 'other', body: { metadata: { name: 'b' } } });
    const modified = await core.patchNamespacedConfigMap({ namespace: 'default', name: 'a', body: { data: { k: 'v' } } }, merge);
    await core.deleteNamespacedConfigMap({ namespace: 'default', name: 'a' });
    const events = await inDefault.next(3);
    expect(events.map((e) => [e.type, e.object.metadata.name])).toEqual([['ADDED', 'a'], ['MODIFIED', 'a'], ['DELETED', 'a']]);
    expect(events.map((e) => e.object.metadata.resourceVersion)).toEqual([created.metadata?.resourceVersion, modified.metadata?.resourceVersion, String(Number(modified.metadata?.resourceVersion) + 1)]);
    expect(events[0]?.object).toMatchObject({ apiVersion: 'v1', kind: 'ConfigMap' });
    expect((await everywhere.next(4)).map((e) => `${e.type} ${e.object.metadata.namespace}/${e.object.metadata.name}`)).toEqual(['ADDED default/a', 'ADDED other/b', 'MODIFIED default/a', 'DELETED default/a']);
    // Without a resourceVersion a watch starts with the current objects.
    const fresh = await watchEvents(kc, '/api/v1/configmaps');
    expect((await fresh.next(1))[0]).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'b' } } });
    for (const w of [inDefault, everywhere, fresh]) w.stop();
  });

  it('filters by label and field selectors; an object that leaves the selection arrives as DELETED', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const labelled = await watchEvents(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: emulator.resourceVersion(), labelSelector: 'app=relay,tier in (edge)' });
    const named = await watchEvents(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: emulator.resourceVersion(), fieldSelector: 'metadata.name=two' });
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'one', labels: { app: 'relay', tier: 'edge' } } } });
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'two', labels: { app: 'relay' } } } });
    await core.patchNamespacedConfigMap({ namespace: 'default', name: 'two', body: { metadata: { labels: { tier: 'edge' } } } }, merge);
    await core.patchNamespacedConfigMap({ namespace: 'default', name: 'one', body: { metadata: { labels: { tier: 'core' } } } }, merge);
    expect((await labelled.next(3)).map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED one', 'ADDED two', 'DELETED one']);
    expect((await named.next(2)).map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED two', 'MODIFIED two']);
    labelled.stop();
    named.stop();
  });

  it('sends BOOKMARKs as v1.20\'s cacher does: the resource\'s last resourceVersion, once the watch has not seen it', async () => {
    await start({ bookmarkIntervalMs: 20 });
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: 'other' } } });
    const from = emulator.resourceVersion();
    const configmaps = await watchEvents(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: from, allowWatchBookmarks: true });
    const secrets = await watchEvents(kc, '/api/v1/namespaces/default/secrets', { resourceVersion: from, allowWatchBookmarks: true });
    // A Secret elsewhere moves the Secret watch's bookmark on, not the ConfigMap watch's: the
    // second Secret bookmark means the ConfigMap watch's timer (started first) has fired since.
    const secret = await core.createNamespacedSecret({ namespace: 'other', body: { metadata: { name: 's' } } });
    expect((await secrets.next(2)).map((e) => `${e.type} ${e.object.metadata.resourceVersion}`)).toEqual([`BOOKMARK ${secret.metadata?.resourceVersion}`, `BOOKMARK ${secret.metadata?.resourceVersion}`]);
    expect(configmaps.events).toEqual([]);
    const unseen = await core.createNamespacedConfigMap({ namespace: 'other', body: { metadata: { name: 'c' } } });
    expect((await configmaps.next(1))[0]).toEqual({ type: 'BOOKMARK', object: { kind: 'ConfigMap', apiVersion: 'v1', metadata: { resourceVersion: unseen.metadata?.resourceVersion, creationTimestamp: null } } });
    configmaps.stop();
    secrets.stop();
    // Events are watched from etcd in v1.20: no bookmarks, and etcd's words for a compacted revision.
    emulator.compactHistory();
    const events = await watchEvents(kc, '/api/v1/namespaces/default/events', { resourceVersion: from, allowWatchBookmarks: true });
    expect((await events.next(1))[0]?.object).toMatchObject({ code: 410, reason: 'Expired', message: 'The resourceVersion for the provided watch is too old.' });
  });

  it('keeps a watch cache per resource: its own events, growing while they are fresh, from its first request on', async () => {
    await start({ watchCache: { minEvents: 2, maxEvents: 4 } });
    const core = kc.makeApiClient(CoreV1Api);
    const from = emulator.resourceVersion();
    for (const name of ['a', 'b', 'c', 'd']) await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name } } });
    // Four fresh ConfigMap events: the cache doubled from 2 to 4 and still reaches back.
    expect((await (await watchEvents(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: from })).next(4)).map((e) => e.object.metadata.name)).toEqual(['a', 'b', 'c', 'd']);
    const e = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'e' } } });
    const expired = await watchEvents(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: from });
    expect((await expired.next(1))[0]?.object).toMatchObject({ code: 410, message: `too old resource version: ${from} (${Number(e.metadata?.resourceVersion) - 4})` });
    // Secrets have their own window: nothing happened to them since.
    const secrets = await watchEvents(kc, '/api/v1/namespaces/default/secrets', { resourceVersion: from });
    await core.createNamespacedSecret({ namespace: 'default', body: { metadata: { name: 's' } } });
    expect((await secrets.next(1))[0]).toMatchObject({ type: 'ADDED', object: { metadata: { name: 's' } } });
    secrets.stop();
    // A custom resource's cache starts with the first request for it: older resourceVersions are gone.
    const beforeFirstRequest = emulator.resourceVersion();
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'f' } } });
    await createRelay('relay');
    const relays = await watchEvents(kc, '/apis/mailfleet.io/v1alpha1/namespaces/default/mailrelays', { resourceVersion: beforeFirstRequest });
    expect((await relays.next(1))[0]?.object).toMatchObject({ code: 410, message: `too old resource version: ${beforeFirstRequest} (${Number(beforeFirstRequest) + 1})` });
  });

  it('streams only what comes after a resourceVersion the resource has not reached, and answers a malformed one with a 500', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const ahead = String(Number(emulator.resourceVersion()) + 2);
    const watch = await watchEvents(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: ahead });
    for (const name of ['a', 'b', 'c']) await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name } } });
    expect((await watch.next(1)).map((e) => e.object.metadata.name)).toEqual(['c']);
    watch.stop();
    const res = await fetch(`${emulator.url}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=abc`);
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax', code: 500 });
  });

  it('ends the watches on a custom resource when its CRD changes, and starts its watch cache again', async () => {
    await start({ crdTeardownMs: 10 });
    const created = await createRelay('relay');
    const watch = await watchEvents(kc, '/apis/mailfleet.io/v1alpha1/namespaces/default/mailrelays', { resourceVersion: created.metadata.resourceVersion as string });
    const crds = kc.makeApiClient(ApiextensionsV1Api);
    await crds.patchCustomResourceDefinition({ name: 'mailrelays.mailfleet.io', body: [{ op: 'add', path: '/spec/names/categories', value: ['mailfleet'] }] });
    expect(await watch.ended).toBeNull();
    const again = await watchEvents(kc, '/apis/mailfleet.io/v1alpha1/namespaces/default/mailrelays', { resourceVersion: created.metadata.resourceVersion as string });
    expect((await again.next(1))[0]?.object).toMatchObject({ code: 410, reason: 'Expired' });
  });

  it('answers a watch from a compacted resourceVersion with an ERROR event carrying 410 Expired', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const old = await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'a' } } });
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'b' } } });
    emulator.compactHistory();
    const watch = await watchEvents(kc, '/api/v1/namespaces/default/configmaps', { resourceVersion: old.metadata?.resourceVersion as string });
    const [error] = await watch.next(1);
    expect(error?.type).toBe('ERROR');
    expect(error?.object).toMatchObject({ kind: 'Status', code: 410, reason: 'Expired', message: `too old resource version: ${old.metadata?.resourceVersion} (${emulator.resourceVersion()})` });
    // client-node reports the stream's end to `done` with no error: the 410 is only in the event.
    expect(await watch.ended).toBeNull();
  });

  it('keeps a ListWatch cache whole across a 410 relist and a dropped connection', async () => {
    await start({ historySize: 3 });
    const core = kc.makeApiClient(CoreV1Api);
    const path = '/api/v1/namespaces/default/configmaps';
    const informer = new ListWatch<V1ConfigMap>(path, new Watch(kc), () => core.listNamespacedConfigMap({ namespace: 'default' }), false);
    const connects: number[] = [];
    informer.on('connect', () => connects.push(Date.now()));
    await informer.start();
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'a' } } });
    await waitFor(() => informer.get('a', 'default'), 'a in the cache');

    emulator.closeWatches();
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'b' } } });
    await waitFor(() => informer.get('b', 'default'), 'b after a reconnect');

    // More changes than the history holds, while disconnected: the resumed watch gets 410 and the informer relists.
    await waitFor(() => emulator.openWatchCount() === 1, 'the informer watching again');
    emulator.failNext({ verb: 'watch' }, { code: 503, times: 1 });
    emulator.closeWatches();
    for (const name of ['c', 'd', 'e', 'f']) await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name } } });
    await core.deleteNamespacedConfigMap({ namespace: 'default', name: 'a' });
    await informer.start(); // the 503 stopped it, as ListWatch does on errors other than 410
    await waitFor(() => informer.list('default').length === 5 && !informer.get('a', 'default'), 'the relisted cache');
    expect(informer.list('default').map((cm) => cm.metadata?.name).sort()).toEqual(['b', 'c', 'd', 'e', 'f']);
    expect(emulator.requestCount({ verb: 'list', path })).toBe(2);
    await informer.stop();
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

describe('schema validation and defaulting', () => {
  it('answers an invalid custom resource with 422 and one cause per field', async () => {
    const invalid = await failure(createRelay('relay', { domain: 'Not A Domain', replicas: -1, mode: 'carrier-pigeon', ports: [{ name: 'a', port: 1 }, { name: 'b', port: 2 }, { name: 'c', port: 3 }, { name: 'a', port: 4 }], tags: [], note: 5 }));
    expect(invalid.code).toBe(422);
    expect(invalid.status.reason).toBe('Invalid');
    expect(invalid.status.details).toMatchObject({ name: 'relay', group: 'mailfleet.io', kind: 'MailRelay' });
    expect(invalid.status.details?.causes?.map((c) => `${c.field}: ${c.message}`)).toEqual([
      `spec.domain: Invalid value: "Not A Domain": spec.domain in body should match '^[a-z0-9.-]+$'`,
      'spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0',
      'spec.mode: Unsupported value: "carrier-pigeon": supported values: "mx", "smarthost"',
      'spec.ports: Too many: 4: must have at most 3 items',
      'spec.ports[3]: Duplicate value: {"name":"a"}',
      'spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items',
      'spec.note: Invalid value: "integer": spec.note in body must be of type string: "integer"',
      // The scale subresource's replicas path is checked too, after the schema (as apiextensions does).
      '.spec.replicas: Invalid value: -1: should be a non-negative integer',
    ]);
    expect(invalid.status.message).toMatch(/^MailRelay.mailfleet.io "relay" is invalid: \[spec.domain: Invalid value/);
    const missing = await failure(createRelay('relay', { replicas: 1, limits: { perMinute: 0 }, strict: { known: true, unknown: 1 }, labels: { a: 1 } }));
    expect(missing.status.details?.causes?.map((c) => `${c.field}: ${c.message}`)).toEqual([
      'spec.domain: Required value',
      'spec.limits.perMinute: Invalid value: 0: spec.limits.perMinute in body should be greater than 0',
      'spec.strict.unknown: Forbidden: field not declared in schema',
      'spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer"',
    ]);
    const single = await failure(createRelay('relay', { domain: 'example.test', replicas: 51 }));
    expect(single.status.message).toBe('MailRelay.mailfleet.io "relay" is invalid: spec.replicas: Invalid value: 51: spec.replicas in body should be less than or equal to 50');
  });

  it('fills in defaults, prunes undeclared fields with a warning, and refuses them under fieldValidation=Strict', async () => {
    const custom = customObjects();
    const created = await custom.createNamespacedCustomObjectWithHttpInfo({ ...relayGroup, namespace: 'default', body: mailRelay('relay', { domain: 'example.test', bogus: true, extra: { anything: { goes: 1 } }, note: null, window: { min: 5, max: 1 } }) });
    expect((created.data as KubeObject).spec).toEqual({ domain: 'example.test', replicas: 2, mode: 'mx', limits: { perMinute: 600 }, extra: { anything: { goes: 1 } }, note: null, window: { min: 5, max: 1 } });
    expect(created.headers.warning).toBe('299 - "unknown field \\"spec.bogus\\""');
    const strict = await failure(custom.createNamespacedCustomObject({ ...relayGroup, namespace: 'default', body: mailRelay('strict', { domain: 'example.test', bogus: true }), fieldValidation: 'Strict' }));
    expect(strict.code).toBe(400);
    expect(strict.status.message).toBe('MailRelay in version "v1alpha1" cannot be handled as a MailRelay: strict decoding error: unknown field "spec.bogus"');
  });
});

describe('Time and MicroTime, parsed as the API server parses them', () => {
  const leases = '/apis/coordination.k8s.io/v1/namespaces/default/leases';
  const send = async (method: string, path: string, body: string, contentType = 'application/json') => {
    const res = await fetch(`${emulator.url}${path}`, { method, headers: { 'Content-Type': contentType }, body });
    return { code: res.status, status: (await res.json()) as StatusBody };
  };

  // The answers below are kube-apiserver v1.20.2's, word for word.
  it('refuses a MicroTime without exactly six fractional digits with the decoder\'s 400', async () => {
    const body = '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l1"},"spec":{"holderIdentity":"a","renewTime":"2030-01-02T03:04:43.725Z"}}';
    const refused = await send('POST', leases, body);
    expect(refused.code).toBe(400);
    expect(refused.status).toMatchObject({ reason: 'BadRequest', code: 400 });
    expect(refused.status.message).toBe(
      'Lease in version "v1" cannot be handled as a Lease: v1.Lease.Spec: v1.LeaseSpec.RenewTime: unmarshalerDecoder: parsing time "2030-01-02T03:04:43.725Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".725Z" as ".000000", error found in #10 byte of ...|4:43.725Z"}}|..., bigger context ...|entity":"a","renewTime":"2030-01-02T03:04:43.725Z"}}|...',
    );
    expect((await send('PUT', `${leases}/l1`, body)).status.message).toBe(refused.status.message);
    const event = '{"apiVersion":"v1","kind":"Event","metadata":{"name":"e2"},"involvedObject":{"kind":"Pod","name":"p","namespace":"default"},"reason":"R","message":"m","type":"Normal","eventTime":"2030-01-02T03:04:43.725Z","reportingComponent":"x","reportingInstance":"y","action":"A"}';
    expect((await send('POST', '/api/v1/namespaces/default/events', event)).status.message).toBe(
      'Event in version "v1" cannot be handled as a Event: v1.Event.Action: ReportingInstance: ReportingController: EventTime: unmarshalerDecoder: parsing time "2030-01-02T03:04:43.725Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".725Z" as ".000000", error found in #10 byte of ...|4:43.725Z","reportin|..., bigger context ...|e":"Normal","eventTime":"2030-01-02T03:04:43.725Z","reportingComponent":"x","reportingInstance":"y",|...',
    );
  });

  it('words the error as json-iterator does, whatever follows the bad field', async () => {
    const cases: [string, string][] = [
      ['{"spec":{"renewTime":"x","bogus":1,"holderIdentity":"a","leaseTransitions":2},"unknown":{"a":[1,2]},"metadata":{"name":"l3"},"kind":"Lease"}', 'v1.Lease.Spec: v1.LeaseSpec.HolderIdentity: RenewTime: '],
      ['{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l3"},"spec":{"holderIdentity":"a","renewTime":"x","leaseDurationSeconds":15,"leaseTransitions":0}}', 'v1.Lease.Spec: v1.LeaseSpec.LeaseDurationSeconds: RenewTime: '],
      ['{"spec":{"renewTime":"x"},"metadata":{"name":"l3"}}', 'v1.Lease.ObjectMeta: v1.ObjectMeta.Spec: v1.LeaseSpec.RenewTime: '],
      ['{"spec":{"renewTime":"x"},"apiVersion":"coordination.k8s.io/v1","kind":"Lease"}', 'v1.Lease.TypeMeta: Kind: TypeMeta: APIVersion: Spec: v1.LeaseSpec.RenewTime: '],
      ['{"spec":{"renewTime":"x","acquireTime":null,"holderIdentity":null}}', 'v1.Lease.Spec: v1.LeaseSpec.HolderIdentity: AcquireTime: RenewTime: '],
      ['{"spec":{"renewTime":"x","bogus":0,"holderIdentity":"a"}}', 'v1.Lease.Spec: v1.LeaseSpec.RenewTime: '],
      ['{"spec":{"renewTime":"x"},"spec":{}}', 'v1.Lease.Spec: Spec: v1.LeaseSpec.RenewTime: '],
      ['{"metadata":{"creationTimestamp":"x","finalizers":[],"name":"l3"}}', 'v1.Lease.ObjectMeta: v1.ObjectMeta.Name: Finalizers: []string: CreationTimestamp: '],
      ['{"metadata":{"creationTimestamp":"x","ownerReferences":[{"name":"p"}],"name":"l3"}}', 'v1.Lease.ObjectMeta: v1.ObjectMeta.OwnerReferences: []v1.OwnerReference: CreationTimestamp: '],
      ['{"metadata":{"name":"l3","creationTimestamp":"x","generateName":"y"},"kind":"Lease"}', 'v1.Lease.TypeMeta: Kind: ObjectMeta: v1.ObjectMeta.GenerateName: CreationTimestamp: '],
    ];
    for (const [body, expected] of cases) {
      const { status } = await send('POST', leases, body);
      expect(/cannot be handled as a Lease: (.*)unmarshalerDecoder/.exec(status.message)?.[1], body).toBe(expected);
    }
    const parse = async (value: string) => /unmarshalerDecoder: (.*), error found/.exec((await send('POST', leases, JSON.stringify({ spec: { renewTime: value } }))).status.message)?.[1];
    expect(await parse('2030-13-02T03:04:43.123456Z')).toBe('parsing time "2030-13-02T03:04:43.123456Z": month out of range');
    expect(await parse('2030-02-30T03:04:43.123456Z')).toBe('parsing time "2030-02-30T03:04:43.123456Z": day out of range');
    expect(await parse('2030-02-03T03:04:43.123456Zjunk')).toBe('parsing time "2030-02-03T03:04:43.123456Zjunk": extra text: "junk"');
    expect(await parse('2030-02-03 03:04:43.123456Z')).toBe('parsing time "2030-02-03 03:04:43.123456Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse " 03:04:43.123456Z" as "T"');
    expect(/unmarshalerDecoder: (.*), error found/.exec((await send('POST', leases, '{"spec":{"renewTime":5}}')).status.message)?.[1]).toBe('json: cannot unmarshal number into Go value of type string');
  });

  it('answers patches that leave a bad MicroTime as the patch handler does: 422 on "patch", or a 500 for apply', async () => {
    expect((await send('POST', leases, '{"metadata":{"name":"l1"},"spec":{"holderIdentity":"a","acquireTime":"2030-01-02T01:04:43.123456Z"}}')).code).toBe(201);
    const merge = await send('PATCH', `${leases}/l1`, '{"spec":{"renewTime":"2030-01-02T03:04:43.725Z"}}', 'application/merge-patch+json');
    expect(merge.code).toBe(422);
    expect(merge.status.reason).toBe('Invalid');
    expect(merge.status.message).toMatch(/^ "" is invalid: patch: Invalid value: "\{.*\}": v1\.Lease\.Spec: v1\.LeaseSpec\.RenewTime: unmarshalerDecoder: parsing time "2030-01-02T03:04:43\.725Z" as "2006-01-02T15:04:05\.000000Z07:00": cannot parse "\.725Z" as "\.000000", error found in #10 byte of/);
    expect(merge.status.details).toEqual({ causes: [{ reason: 'FieldValueInvalid', field: 'patch', message: merge.status.message.replace(' "" is invalid: patch: ', '') }] });
    const strategic = await send('PATCH', `${leases}/l1`, '{"spec":{"renewTime":"2030-01-02T03:04:43.725Z", "holderIdentity":"b", "leaseDurationSeconds": 5}, "metadata":{"labels":{"a":"b"}}}', 'application/strategic-merge-patch+json');
    expect(strategic.status.message).toBe(
      ' "" is invalid: patch: Invalid value: "map[metadata:map[labels:map[a:b]] spec:map[holderIdentity:b leaseDurationSeconds:5 renewTime:2030-01-02T03:04:43.725Z]]": parsing time "2030-01-02T03:04:43.725Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".725Z" as ".000000"',
    );
    const applied = await send('PATCH', `${leases}/l1?fieldManager=x`, '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","spec":{"renewTime":"2030-01-02T03:04:43.725Z"}}', 'application/apply-patch+yaml');
    expect(applied).toEqual({
      code: 500,
      status: {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: 'failed to convert new object to proper version: unable to convert unstructured object to coordination.k8s.io/v1, Kind=Lease: parsing time "2030-01-02T03:04:43.725Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".725Z" as ".000000"',
        code: 500,
      },
    });
  });

  it('takes any fraction on a Time and stores it in UTC, truncated to the second', async () => {
    const event = { apiVersion: 'v1', kind: 'Event', metadata: { name: 'e1' }, involvedObject: { kind: 'Pod', name: 'p', namespace: 'default' }, reason: 'R', message: 'm', type: 'Normal', firstTimestamp: '2030-01-02T03:04:43.725Z', lastTimestamp: '2030-01-02T03:04:43.999999+01:00', count: 1 };
    expect((await postJson('/api/v1/namespaces/default/events', event)).body).toMatchObject({ firstTimestamp: '2030-01-02T03:04:43Z', lastTimestamp: '2030-01-02T02:04:43Z' });
    const refused = await postJson('/api/v1/namespaces/default/events', { ...event, metadata: { name: 'e2' }, lastTimestamp: 'yesterday' });
    expect(refused.code).toBe(400);
    expect(refused.body.message).toContain('v1.Event.Count: LastTimestamp: unmarshalerDecoder: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"');
  });
});

describe('CRD patterns (RE2, as the API server compiles them)', () => {
  const crdWith = (pattern: string, versions = 1) => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'widgets.test.io' },
    spec: {
      group: 'test.io',
      scope: 'Namespaced',
      names: { kind: 'Widget', plural: 'widgets' },
      versions: Array.from({ length: versions }, (_, i) => ({
        name: `v${i + 1}`,
        served: true,
        storage: i === 0,
        schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', properties: { name: { type: 'string', pattern: i === 0 ? pattern : '^a' }, tags: { type: 'array', items: { type: 'string', pattern } } } } } } },
      })),
    },
  });
  const createCrd = (crd: object) => kc.makeApiClient(ApiextensionsV1Api).createCustomResourceDefinition({ body: loadYaml<V1CustomResourceDefinition>(JSON.stringify(crd)) });

  it('refuses a CRD whose pattern Go cannot compile, with the API server\'s causes sorted by path', async () => {
    const refused = await failure(createCrd(crdWith('^(?!-)[a-z.-]+$')));
    expect(refused.code).toBe(422);
    expect(refused.status.details?.causes).toEqual([
      { reason: 'FieldValueInvalid', field: 'spec.validation.openAPIV3Schema.properties[spec].properties[name].pattern', message: 'Invalid value: "^(?!-)[a-z.-]+$": must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?!`' },
      { reason: 'FieldValueInvalid', field: 'spec.validation.openAPIV3Schema.properties[spec].properties[tags].items.pattern', message: 'Invalid value: "^(?!-)[a-z.-]+$": must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?!`' },
    ]);
    // Versions with different schemas are named one by one; Go 1.19 has no (?<name>...) groups.
    const named = await failure(createCrd(crdWith('(?<x>a)', 2)));
    expect(named.status.details?.causes?.map((c) => `${c.field}: ${c.message}`)).toEqual([
      'spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[name].pattern: Invalid value: "(?<x>a)": must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?<`',
      'spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[tags].items.pattern: Invalid value: "(?<x>a)": must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?<`',
      'spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[tags].items.pattern: Invalid value: "(?<x>a)": must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?<`',
    ]);
    expect((await failure(createCrd(crdWith('a{1001}')))).status.details?.causes?.[0]?.message).toContain('error parsing regexp: invalid repeat count: `{1001}`');
  });

  it('refuses a CRD of a protected group (*.k8s.io) without its approval annotation, as the API server does', async () => {
    const crd = { ...crdWith('^a'), metadata: { name: 'widgets.test.k8s.io' }, spec: { ...(crdWith('^a') as { spec: object }).spec, group: 'test.k8s.io' } };
    const refused = await failure(createCrd(crd));
    expect(refused.status.details?.causes).toEqual([{ reason: 'FieldValueRequired', field: 'metadata.annotations[api-approved.kubernetes.io]', message: 'Required value: protected groups must have approval annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111' }]);
    await createCrd({ ...crd, metadata: { ...crd.metadata, annotations: { 'api-approved.kubernetes.io': 'https://github.com/kubernetes/kubernetes/pull/1' } } });
  });

  it('matches custom resources with RE2 semantics, not JavaScript\'s', async () => {
    // RE2's \\S is ASCII-only (a no-break space is not a space to it), and inline flags compile.
    await createCrd({ ...crdWith('^(?i)[a-z]+\\S$') });
    await waitFor(() => emulator.get({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: 'widgets.test.io' })?.status, 'the CRD established');
    const widget = (name: string, value: string) => customObjects().createNamespacedCustomObject({ group: 'test.io', version: 'v1', plural: 'widgets', namespace: 'default', body: { apiVersion: 'test.io/v1', kind: 'Widget', metadata: { name }, spec: { name: value } } });
    await widget('nbsp', 'ABC\u00a0');
    const refused = await failure(widget('space', 'abc '));
    expect(refused.status.details?.causes?.[0]?.message).toBe(`Invalid value: "abc ": spec.name in body should match '^(?i)[a-z]+\\S$'`);
  });
});

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

describe('test helpers', () => {
  it('counts requests per verb and resource, and reads objects without HTTP', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'a' } } });
    await core.readNamespacedConfigMap({ namespace: 'default', name: 'a' });
    await core.listNamespacedConfigMap({ namespace: 'default' });
    await createRelay('relay');
    expect(emulator.requestCount({ resource: 'configmaps' })).toBe(3);
    expect(emulator.requestCount({ verb: 'create' })).toBe(2);
    expect(emulator.requestCount({ verb: 'get', resource: 'configmaps', name: 'a' })).toBe(1);
    expect(emulator.requestCount({ path: /\/mailrelays$/ })).toBe(1);
    emulator.resetRequests();
    expect(emulator.requests()).toEqual([]);
    expect(emulator.get({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: 'default', name: 'relay' })?.spec).toMatchObject({ replicas: 2 });
    expect(emulator.list({ apiVersion: 'v1', kind: 'Namespace' }).map((n) => n.metadata.name)).toEqual(['default', 'kube-node-lease', 'kube-public', 'kube-system']);
  });

  it('fails the next matching requests as told, with Retry-After on 429', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    emulator.failNext({ verb: 'create', resource: 'configmaps' }, { code: 429, retryAfterSeconds: 2 });
    emulator.failNext({ verb: 'get' }, 500);
    const throttled = await failure(core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'a' } } }));
    expect(throttled).toMatchObject({ code: 429, status: { reason: 'TooManyRequests', details: { retryAfterSeconds: 2 } }, headers: { 'retry-after': '2' } });
    await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'a' } } });
    const broken = await failure(core.readNamespacedConfigMap({ namespace: 'default', name: 'a' }));
    expect(broken.status).toMatchObject({ code: 500, reason: 'InternalError' });
    expect((await core.readNamespacedConfigMap({ namespace: 'default', name: 'a' })).metadata?.name).toBe('a');
    expect(emulator.requests().map((r) => r.code)).toEqual([429, 201, 500, 200]);
  });

  it('gives each KubeConfig the namespace it is asked for', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: 'mail' } } });
    const created = await KubernetesObjectApi.makeApiClient(emulator.kubeConfig('mail')).create<Manifest>({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' } });
    expect(created.metadata?.namespace).toBe('mail');
  });
});
