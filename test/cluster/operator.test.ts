/**
 * The operator against a real kube-apiserver (v1.20.2), as the chart installs it: CRDs and
 * RBAC from `helm template`, the operator running as the chart's ServiceAccount (a token the API
 * server signed), user objects applied with the real kubectl, garbage collection and Deployment
 * status from the real kube-controller-manager. Faults (failed writes, cut watches) are injected
 * by a proxy in front of the real server (./faults.ts); every answer it does not replace is the
 * server's own. No kubelet runs here: relay pods are created by the ReplicaSet controller and
 * stay Pending, which is itself a case a user meets (an image that cannot be pulled, a node pool
 * that is full). test/cluster/fleet.test.ts runs them.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import type { AnyObject } from '../../operator/kube/client.js';
import type { RunningOperator } from '../../operator/main.js';
import { startFaultProxy, type FaultProxy } from './faults.js';
import { adminClient, describeCluster, ensureNamespace, eventually, installChartOnce, kubectlApply, serves, startChartOperator, type ChartInstall } from './harness.js';

type Condition = { type: string; status: string; reason: string; message: string; observedGeneration?: number };
type Obj = AnyObject & { spec?: any; status?: any; data?: Record<string, string> }; // eslint-disable-line @typescript-eslint/no-explicit-any -- objects read back loosely in assertions

const GROUP = 'mailfleet.io/v1alpha1';
const NO_DNS = { verification: { resolvers: ['127.0.0.1:9'] } };

describeCluster('operator on a real kube-apiserver', (cluster) => {
  let chart: ChartInstall;
  const stops: (() => Promise<unknown>)[] = [];
  let counter = 0;
  beforeAll(async () => {
    chart = await installChartOnce(cluster());
  });
  const namespaces: string[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });
  // The namespace controller empties them in the background.
  afterAll(async () => {
    for (const ns of namespaces) await admin().delete({ apiVersion: 'v1', kind: 'Namespace', name: ns });
  });

  const admin = () => adminClient(cluster());
  /** A namespace of the test's own. */
  const namespace = async () => {
    const ns = `mf-op-${process.pid}-${++counter}`;
    await ensureNamespace(cluster(), ns);
    namespaces.push(ns);
    return ns;
  };
  /** The operator in this process, as the chart's ServiceAccount, watching one namespace. */
  const operator = async (ns: string, opts: { proxy?: FaultProxy } = {}): Promise<RunningOperator> => {
    const op = await startChartOperator(cluster(), chart, ns, opts);
    stops.push(() => op.stop());
    return op;
  };
  const proxy = async () => {
    const p = await startFaultProxy(cluster());
    stops.push(() => p.stop());
    return p;
  };
  const apply = (...objects: object[]) => kubectlApply(cluster(), objects as AnyObject[]);
  const get = (ns: string, apiVersion: string, kind: string, name: string) => admin().get<Obj>({ apiVersion, kind, namespace: ns, name });
  const sd = (ns: string, name: string) => get(ns, GROUP, 'SenderDomain', name);
  const mr = (ns: string, name: string) => get(ns, GROUP, 'MailRelay', name);
  const condition = (o: Obj | undefined, type: string) => (o?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === type);
  const senderDomain = (ns: string, name: string, domain: string, spec: object = {}) => ({ apiVersion: GROUP, kind: 'SenderDomain', metadata: { name, namespace: ns, labels: { 'mailfleet.io/relay': 'outbound' } }, spec: { domain, ...NO_DNS, ...spec } });
  const mailRelay = (ns: string, name: string, spec: object = {}) => ({
    apiVersion: GROUP,
    kind: 'MailRelay',
    metadata: { name, namespace: ns },
    spec: { tlsSecretName: `${name}-tls`, usersSecretName: `${name}-users`, senderDomainSelector: { matchLabels: { 'mailfleet.io/relay': 'outbound' } }, ...spec },
  });
  const secret = (ns: string, name: string, data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, stringData: data });
  const events = async (ns: string, reason: string) => (await admin().list<Obj & { reason: string; message: string; type: string }>('v1', 'Event', ns)).items.filter((e) => e.reason === reason);

  it('a SenderDomain gets its DKIM key Secret, its records and its conditions; a spec change is reconciled at its new generation', async () => {
    const ns = await namespace();
    await operator(ns);
    await apply(senderDomain(ns, 'example-com', 'example.com'));
    await eventually(async () => condition(await sd(ns, 'example-com'), 'KeysReady')?.status === 'True', 'KeysReady');
    const domain = (await sd(ns, 'example-com'))!;
    expect(domain.status.activeSelectors).toBe('mailfleet-1-rsa,mailfleet-1-ed');
    const keys = (await get(ns, 'v1', 'Secret', 'example-com-dkim'))!;
    expect(Object.keys(keys.data!).sort()).toEqual(['mailfleet-1-ed.pem', 'mailfleet-1-rsa.pem']);
    expect((keys.metadata.ownerReferences as { kind: string; uid: string }[])[0]).toMatchObject({ kind: 'SenderDomain', uid: domain.metadata.uid });
    expect(domain.status.records.map((r: { purpose: string; name: string }) => `${r.purpose} ${r.name}`)).toEqual(['spf example.com', 'dkim mailfleet-1-rsa._domainkey.example.com', 'dkim mailfleet-1-ed._domainkey.example.com', 'dmarc _dmarc.example.com']);
    expect(condition(domain, 'DNSVerified')).toMatchObject({ status: 'False', observedGeneration: 1 });

    await apply(senderDomain(ns, 'example-com', 'example.com', { dmarc: { policy: 'quarantine' } }));
    await eventually(async () => (await sd(ns, 'example-com'))?.status?.observedGeneration === 2, 'generation 2 observed');
    const after = (await sd(ns, 'example-com'))!;
    expect(after.status.records.find((r: { purpose: string }) => r.purpose === 'dmarc').value).toMatch(/^v=DMARC1; p=quarantine/);
    expect(after.status.activeSelectors).toBe('mailfleet-1-rsa,mailfleet-1-ed');
  });

  it('deleting a SenderDomain lets the garbage collector take the Secret it owns', async () => {
    const ns = await namespace();
    await operator(ns);
    await apply(senderDomain(ns, 'gone-com', 'gone.com'));
    await eventually(async () => !!(await get(ns, 'v1', 'Secret', 'gone-com-dkim')), 'the key Secret');
    await admin().delete({ apiVersion: GROUP, kind: 'SenderDomain', namespace: ns, name: 'gone-com' });
    // The garbage collector learns a new CRD's resource by discovery every 30 s: allow for that.
    await eventually(async () => !(await get(ns, 'v1', 'Secret', 'gone-com-dkim')), 'the key Secret collected by kube-controller-manager', 60_000);
  });

  it('a MailRelay waits, Degraded, for its Secrets; then every object is made, and it is Progressing, not rolled out, while no pod has started', async () => {
    const ns = await namespace();
    await operator(ns);
    await apply(secret(ns, 'outbound-users', { users: 'app:x' }));
    await apply(mailRelay(ns, 'outbound'));
    await eventually(async () => condition(await mr(ns, 'outbound'), 'Degraded')?.message === 'waiting for Secret outbound-tls (spec.tlsSecretName)', 'Degraded, waiting for the TLS Secret');
    expect(await get(ns, 'apps/v1', 'Deployment', 'outbound')).toBeUndefined();

    await apply(secret(ns, 'outbound-tls', { 'tls.crt': 'x', 'tls.key': 'y' }));
    await eventually(async () => !!(await get(ns, 'apps/v1', 'Deployment', 'outbound')), 'the Deployment');
    // The real Deployment controller: pods created at the new version, none available (no kubelet).
    await eventually(async () => (await get(ns, 'apps/v1', 'Deployment', 'outbound'))?.status?.updatedReplicas === 2, 'the Deployment status');
    const progressing = 'rolling out: 2 of 2 updated, 0 available (the Deployment: MinimumReplicasUnavailable: Deployment does not have minimum availability.)';
    await eventually(async () => condition(await mr(ns, 'outbound'), 'Progressing')?.message === progressing, 'Progressing from the real Deployment status');
    const relay = (await mr(ns, 'outbound'))!;
    // The old waiting message is gone: Degraded says what is true now.
    expect(condition(relay, 'Degraded')?.message).not.toContain('waiting for Secret');
    expect(condition(relay, 'Progressing')).toMatchObject({ status: 'True', reason: 'RollingOut' });
    expect(condition(relay, 'Ready')).toMatchObject({ status: 'False', reason: 'NotAvailable' });
    for (const [apiVersion, kind, name] of [['v1', 'ConfigMap', 'outbound-config'], ['v1', 'Service', 'outbound'], ['v1', 'Service', 'outbound-pods'], ['v1', 'Secret', 'outbound-handoff']]) {
      expect(await get(ns, apiVersion!, kind!, name!), `${kind} ${name}`).toBeDefined();
    }
    const deployment = (await get(ns, 'apps/v1', 'Deployment', 'outbound'))!;
    expect((deployment.metadata as { managedFields?: { manager: string; operation: string }[] }).managedFields?.map((f) => `${f.manager} ${f.operation}`)).toContain('mailfleet-operator Apply');
  });

  it('leaves out what the cluster does not serve (policy/v1 on v1.20), says so in Degraded and an Event, and makes the rest', async () => {
    const pdbServed = await serves(cluster(), 'policy/v1');
    const ns = await namespace();
    await operator(ns);
    await apply(secret(ns, 'outbound-tls', { 'tls.crt': 'x', 'tls.key': 'y' }), secret(ns, 'outbound-users', { users: 'app:x' }), mailRelay(ns, 'outbound'));
    await eventually(async () => !!(await get(ns, 'apps/v1', 'Deployment', 'outbound')), 'the Deployment');
    if (pdbServed) {
      process.stdout.write(`${cluster().version} serves policy/v1: the PodDisruptionBudget is made\n`);
      await eventually(async () => !!(await get(ns, 'policy/v1', 'PodDisruptionBudget', 'outbound')), 'the PodDisruptionBudget');
      return;
    }
    await eventually(async () => condition(await mr(ns, 'outbound'), 'Degraded')?.reason === 'APINotServed', 'Degraded APINotServed');
    expect(condition(await mr(ns, 'outbound'), 'Degraded')?.message).toBe('PodDisruptionBudget outbound not made: the cluster does not serve policy/v1 (Kubernetes 1.21 and later serve it; the relay pods run without a disruption budget)');
    await eventually(async () => (await events(ns, 'APINotServed')).length === 1, 'a Warning Event');
    expect((await events(ns, 'APINotServed'))[0]!.type).toBe('Warning');
    expect(await get(ns, 'v1', 'Service', 'outbound')).toBeDefined();
  });

  it('makes a deleted Service or ConfigMap again at once, without a spec change', async () => {
    const ns = await namespace();
    await operator(ns);
    await apply(secret(ns, 'outbound-tls', { 'tls.crt': 'x', 'tls.key': 'y' }), secret(ns, 'outbound-users', { users: 'app:x' }), mailRelay(ns, 'outbound'));
    await eventually(async () => !!(await get(ns, 'v1', 'Service', 'outbound')) && !!(await get(ns, 'v1', 'ConfigMap', 'outbound-config')), 'the Service and the ConfigMap');
    const before = (await get(ns, 'v1', 'Service', 'outbound'))!.metadata.uid;
    await admin().delete({ apiVersion: 'v1', kind: 'Service', namespace: ns, name: 'outbound' });
    await admin().delete({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns, name: 'outbound-config' });
    await eventually(async () => {
      const svc = await get(ns, 'v1', 'Service', 'outbound');
      return !!svc && svc.metadata.uid !== before && !!(await get(ns, 'v1', 'ConfigMap', 'outbound-config'));
    }, 'both made again');
  });

  it('an apply the server refuses replaces the condition with one that names the object, the request and the reason, and clears once it goes through', async () => {
    const ns = await namespace();
    const faults = await proxy();
    await operator(ns, { proxy: faults });
    await apply(secret(ns, 'outbound-users', { users: 'app:x' }), mailRelay(ns, 'outbound'));
    await eventually(async () => condition(await mr(ns, 'outbound'), 'Degraded')?.message === 'waiting for Secret outbound-tls (spec.tlsSecretName)', 'Degraded, waiting for the Secret');
    // The Service's apply fails (as an admission webhook or a quota would refuse it) until the
    // condition was seen: with a fixed number of failures the operator's retries could all go
    // by between two reads of the status (CI saw three within a tenth of a second).
    const allow = faults.failNext({ method: 'PATCH', path: new RegExp(`/api/v1/namespaces/${ns}/services/outbound\\?`) }, 403, 'Forbidden', Infinity);
    await apply(secret(ns, 'outbound-tls', { 'tls.crt': 'x', 'tls.key': 'y' }));
    let failed: ReturnType<typeof condition>;
    const explain = async () =>
      [
        `conditions: ${JSON.stringify((await mr(ns, 'outbound'))?.status?.conditions)}`,
        `writes through the proxy: ${JSON.stringify(faults.requests().filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.path} ${r.status} ${r.body?.slice(0, 300) ?? ''}`), null, 1)}`,
        `requests the API server has not answered: ${JSON.stringify(faults.unanswered())}`,
      ].join('\n');
    await eventually(async () => (failed = condition(await mr(ns, 'outbound'), 'Degraded'))?.reason === 'ApplyFailed', 'Degraded ApplyFailed', 45_000, explain);
    allow();
    expect(failed!.message).toMatch(new RegExp(`^could not apply Service outbound: PATCH /api/v1/namespaces/${ns}/services/outbound\\?fieldManager=mailfleet-operator&force=true: 403 injected by the test's fault proxy: Forbidden`));
    // The rest was applied all the same.
    expect(await get(ns, 'apps/v1', 'Deployment', 'outbound')).toBeDefined();
    await eventually(async () => condition(await mr(ns, 'outbound'), 'Degraded')?.reason !== 'ApplyFailed', 'Degraded cleared after the retries', 60_000);
    expect(await get(ns, 'v1', 'Service', 'outbound')).toBeDefined();
    expect((await events(ns, 'ApplyFailed')).length).toBeGreaterThan(0);
  });

  it('a SenderDomain asking for a DNSEndpoint where external-dns is not installed says so, and still makes its keys and records', async () => {
    const served = await serves(cluster(), 'externaldns.k8s.io/v1alpha1');
    expect(served, 'this cluster has no external-dns CRD').toBe(false);
    const ns = await namespace();
    await operator(ns);
    await apply(senderDomain(ns, 'example-com', 'example.com', { dnsEndpoint: { enabled: true, ttl: 600 } }));
    await eventually(async () => condition(await sd(ns, 'example-com'), 'KeysReady')?.status === 'True', 'KeysReady');
    const domain = (await sd(ns, 'example-com'))!;
    expect(condition(domain, 'Degraded')).toMatchObject({ status: 'True', reason: 'APINotServed' });
    expect(condition(domain, 'Degraded')?.message).toContain('does not serve externaldns.k8s.io/v1alpha1');
    expect(domain.status.records).toHaveLength(4);
    await eventually(async () => (await events(ns, 'APINotServed')).length === 1, 'a Warning Event');
  });

  it('retries a reconcile whose status writes conflict, with backoff, and makes one pair of keys', async () => {
    const ns = await namespace();
    const faults = await proxy();
    faults.failNext({ method: 'PATCH', path: new RegExp(`/namespaces/${ns}/senderdomains/retry-com/status`) }, 409, 'Conflict', 2);
    const op = await operator(ns, { proxy: faults });
    await apply(senderDomain(ns, 'retry-com', 'retry.com'));
    await eventually(async () => condition(await sd(ns, 'retry-com'), 'KeysReady')?.status === 'True', 'KeysReady after the conflicts', 30_000);
    const errors = (await op.metrics.reconciles.get()).values.find((v) => v.labels.controller === 'senderdomain' && v.labels.result === 'error')?.value;
    expect(errors).toBe(2);
    expect((await sd(ns, 'retry-com'))!.status.activeSelectors).toBe('mailfleet-1-rsa,mailfleet-1-ed');
    expect(Object.keys((await get(ns, 'v1', 'Secret', 'retry-com-dkim'))!.data!)).toHaveLength(2);
  });

  it('a restarted operator resumes without making a second key, and after its first pass writes nothing', async () => {
    const ns = await namespace();
    const first = await operator(ns);
    await apply(senderDomain(ns, 'example-com', 'example.com'));
    await eventually(async () => condition(await sd(ns, 'example-com'), 'KeysReady')?.status === 'True', 'KeysReady');
    const keys = (await get(ns, 'v1', 'Secret', 'example-com-dkim'))!.data;
    await first.stop();

    const faults = await proxy();
    const second = await operator(ns, { proxy: faults });
    // Its first pass over the domain is done when the reconcile has been counted and nothing is queued.
    await eventually(async () => (await second.metrics.reconciles.get()).values.some((v) => v.labels.controller === 'senderdomain' && v.value >= 1) && (await second.metrics.queueDepth.get()).values.every((v) => v.value === 0), 'the first pass');
    expect((await get(ns, 'v1', 'Secret', 'example-com-dkim'))!.data).toEqual(keys);
    const writes = faults.requests().filter((r) => !['GET'].includes(r.method));
    expect(writes.map((r) => `${r.method} ${r.path} ${r.body ?? ''}`)).toEqual([]);
  });

  it('keeps reconciling after its watches are cut, and after new watches were held back while objects changed', async () => {
    const ns = await namespace();
    const faults = await proxy();
    await operator(ns, { proxy: faults });
    await apply(senderDomain(ns, 'before-com', 'before.com'));
    await eventually(async () => condition(await sd(ns, 'before-com'), 'KeysReady')?.status === 'True', 'the first domain');
    faults.holdWatches(true);
    faults.cutWatches();
    await apply(senderDomain(ns, 'during-com', 'during.com'));
    faults.holdWatches(false);
    await eventually(async () => condition(await sd(ns, 'during-com'), 'KeysReady')?.status === 'True', 'a domain created while the watches were down', 30_000);
    faults.cutWatches();
    await apply(senderDomain(ns, 'after-com', 'after.com'));
    await eventually(async () => condition(await sd(ns, 'after-com'), 'KeysReady')?.status === 'True', 'a domain created after the watches were cut again', 30_000);
  });

  it('deleting a MailRelay lets the garbage collector take its Deployment, Services, ConfigMap and handoff Secret', async () => {
    const ns = await namespace();
    await operator(ns);
    await apply(secret(ns, 'outbound-tls', { 'tls.crt': 'x', 'tls.key': 'y' }), secret(ns, 'outbound-users', { users: 'app:x' }), mailRelay(ns, 'outbound'));
    await eventually(async () => !!(await get(ns, 'apps/v1', 'Deployment', 'outbound')), 'the Deployment');
    await admin().delete({ apiVersion: GROUP, kind: 'MailRelay', namespace: ns, name: 'outbound' });
    await eventually(async () => {
      for (const [apiVersion, kind, name] of [['apps/v1', 'Deployment', 'outbound'], ['v1', 'Service', 'outbound'], ['v1', 'Service', 'outbound-pods'], ['v1', 'ConfigMap', 'outbound-config'], ['v1', 'Secret', 'outbound-handoff']]) if (await get(ns, apiVersion!, kind!, name!)) return false;
      return true;
    }, 'every owned object collected', 60_000);
    // The user's own Secrets stay.
    expect(await get(ns, 'v1', 'Secret', 'outbound-tls')).toBeDefined();
  });
});
