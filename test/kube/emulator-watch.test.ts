// The emulator over HTTP: watches (selectors, bookmarks, per-resource watch caches, 410 Expired) and a ListWatch across relists.
import { CoreV1Api, ListWatch, ApiextensionsV1Api, Watch, type V1ConfigMap } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { waitFor, watchEvents } from './fixtures.js';
import { createRelay, emulator, kc, merge, start, useEmulator } from './session.js';

useEmulator();

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
