// The emulator's knobs for tests: the request log, injected failures, and a KubeConfig per namespace.
import { CoreV1Api, KubernetesObjectApi } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { failure, type Manifest } from './fixtures.js';
import { createRelay, emulator, kc, useEmulator } from './session.js';

useEmulator();

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
