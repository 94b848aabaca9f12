/**
 * The operator against the Kubernetes API emulator (test/kube), over HTTP, with the CRDs in
 * crds/: what a user sees with kubectl after applying SenderDomains and MailRelays.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { KubeEmulator } from './kube/emulator.js';
import type { RunningOperator } from '../operator/main.js';
import { startCluster, startTestOperator } from './support/operator.js';
import { waitFor } from './support/relay.js';

type Obj = { metadata: { name: string; generation?: number; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; spec?: any; status?: any; data?: Record<string, string> }; // eslint-disable-line @typescript-eslint/no-explicit-any -- objects read back loosely in assertions

const SD = { apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain' };
const MR = { apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay' };

async function apply(cluster: KubeEmulator, object: object): Promise<void> {
  const o = object as { apiVersion: string; kind: string; metadata: { name: string; namespace: string } };
  const res = await fetch(`${cluster.url}${pathOf(o.apiVersion, o.kind, o.metadata.namespace, o.metadata.name)}?fieldManager=kubectl&force=true`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/apply-patch+yaml' },
    body: JSON.stringify(object),
  });
  if (!res.ok) throw new Error(`apply ${o.kind} ${o.metadata.name}: ${res.status} ${await res.text()}`);
}

async function remove(cluster: KubeEmulator, apiVersion: string, kind: string, namespace: string, name: string): Promise<void> {
  const res = await fetch(`${cluster.url}${pathOf(apiVersion, kind, namespace, name)}`, { method: 'DELETE' });
  if (!res.ok) throw new Error(`delete ${kind} ${name}: ${res.status}`);
}

function pathOf(apiVersion: string, kind: string, namespace: string, name: string): string {
  const plural = `${kind.toLowerCase()}s`;
  return `${apiVersion === 'v1' ? '/api/v1' : `/apis/${apiVersion}`}/namespaces/${namespace}/${plural}/${name}`;
}

const get = (cluster: KubeEmulator, ref: { apiVersion: string; kind: string }, name: string, namespace = 'mail') => cluster.get({ ...ref, namespace, name }) as Obj | undefined;
const condition = (o: Obj | undefined, type: string) => (o?.status?.conditions as { type: string; status: string; message: string; observedGeneration?: number }[] | undefined)?.find((c) => c.type === type);

const senderDomain = (name: string, domain: string, spec: object = {}) => ({ ...SD, metadata: { name, namespace: 'mail', labels: { 'mailfleet.io/relay': 'outbound' } }, spec: { domain, ...spec } });
const mailRelay = (name: string, spec: object = {}) => ({
  ...MR,
  metadata: { name, namespace: 'mail' },
  spec: { tlsSecretName: `${name}-tls`, usersSecretName: `${name}-users`, senderDomainSelector: { matchLabels: { 'mailfleet.io/relay': 'outbound' } }, ...spec },
});
const secret = (name: string, data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'mail' }, stringData: data });

describe('operator on the Kubernetes API emulator', () => {
  let cluster: KubeEmulator | undefined;
  const operators: RunningOperator[] = [];
  afterEach(async () => {
    for (const o of operators.splice(0)) await o.stop();
    await cluster?.stop();
    cluster = undefined;
  });
  const start = async (over = {}) => {
    const op = await startTestOperator(cluster!, over);
    operators.push(op);
    return op;
  };

  it('a SenderDomain gets its DKIM key Secret, its records and its conditions; a spec change is reconciled at its new generation', async () => {
    cluster = await startCluster();
    await start();
    await apply(cluster, senderDomain('example-com', 'example.com', { verification: { resolvers: ['127.0.0.1:9'] } }));
    await waitFor(() => condition(get(cluster!, SD, 'example-com'), 'KeysReady')?.status === 'True', 'KeysReady');
    const sd = get(cluster, SD, 'example-com')!;
    expect(sd.status.secretName).toBe('example-com-dkim');
    expect(sd.status.activeSelectors).toBe('mailfleet-1-rsa,mailfleet-1-ed');
    const keySecret = cluster.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'mail', name: 'example-com-dkim' }) as Obj;
    expect(Object.keys(keySecret.data!).sort()).toEqual(['mailfleet-1-ed.pem', 'mailfleet-1-rsa.pem']);
    expect(Buffer.from(keySecret.data!['mailfleet-1-rsa.pem']!, 'base64').toString()).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect((keySecret as { metadata: { ownerReferences?: { kind: string; name: string }[] } }).metadata.ownerReferences?.[0]).toMatchObject({ kind: 'SenderDomain', name: 'example-com' });
    expect(sd.status.records.map((r: { purpose: string; name: string }) => `${r.purpose} ${r.name}`)).toEqual(['spf example.com', 'dkim mailfleet-1-rsa._domainkey.example.com', 'dkim mailfleet-1-ed._domainkey.example.com', 'dmarc _dmarc.example.com']);
    // Nothing answers DNS at 127.0.0.1:9: the records are not verified, and status says so.
    expect(condition(sd, 'DNSVerified')).toMatchObject({ status: 'False', observedGeneration: 1 });
    expect(condition(sd, 'Ready')?.status).toBe('False');

    await apply(cluster, senderDomain('example-com', 'example.com', { verification: { resolvers: ['127.0.0.1:9'] }, dmarc: { policy: 'quarantine' } }));
    await waitFor(() => get(cluster!, SD, 'example-com')?.status?.observedGeneration === 2, 'generation 2 observed');
    const after = get(cluster, SD, 'example-com')!;
    expect(after.metadata.generation).toBe(2);
    expect(after.status.records.find((r: { purpose: string }) => r.purpose === 'dmarc').value).toMatch(/^v=DMARC1; p=quarantine/);
    // The same keys: a spec change never makes new ones.
    expect(after.status.activeSelectors).toBe('mailfleet-1-rsa,mailfleet-1-ed');
  });

  it('deleting a SenderDomain collects the Secret it owns', async () => {
    cluster = await startCluster();
    await start();
    await apply(cluster, senderDomain('gone-com', 'gone.com', { verification: { resolvers: ['127.0.0.1:9'] } }));
    await waitFor(() => !!cluster!.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'mail', name: 'gone-com-dkim' }), 'the key Secret');
    await remove(cluster, SD.apiVersion, 'SenderDomain', 'mail', 'gone-com');
    await waitFor(() => !cluster!.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'mail', name: 'gone-com-dkim' }), 'the key Secret collected');
  });

  it('a MailRelay that names a missing Secret is Degraded and applies nothing; when the Secret appears it becomes Ready unattended', async () => {
    cluster = await startCluster();
    await start();
    await apply(cluster, secret('outbound-tls', { 'tls.crt': 'x', 'tls.key': 'y' }));
    await apply(cluster, mailRelay('outbound'));
    await waitFor(() => condition(get(cluster!, MR, 'outbound'), 'Degraded')?.status === 'True', 'Degraded');
    const degraded = get(cluster, MR, 'outbound')!;
    expect(condition(degraded, 'Degraded')!.message).toBe('waiting for Secret outbound-users (spec.usersSecretName)');
    expect(condition(degraded, 'Ready')?.status).toBe('False');
    expect(cluster.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'mail', name: 'outbound' })).toBeUndefined();
    expect(cluster.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'mail', name: 'outbound-config' })).toBeUndefined();

    await apply(cluster, secret('outbound-users', { users: 'app:$scrypt$...' }));
    await waitFor(() => condition(get(cluster!, MR, 'outbound'), 'Ready')?.status === 'True', 'Ready after the Secret appeared');
    const ready = get(cluster, MR, 'outbound')!;
    expect(condition(ready, 'Degraded')?.status).toBe('False');
    expect(ready.status).toMatchObject({ replicas: 2, readyReplicas: 2, selector: 'app.kubernetes.io/name=mailfleet-relay,app.kubernetes.io/instance=outbound', endpoint: 'outbound.mail.svc:587', observedGeneration: 1 });
    const deployment = cluster.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'mail', name: 'outbound' }) as Obj;
    expect(deployment.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem).toBe(true);
    // The fleet's handoff token: made once by the operator, owned by the relay, mounted in its pods.
    const handoff = cluster.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'mail', name: 'outbound-handoff' }) as unknown as { data: { token: string }; metadata: { ownerReferences: { name: string }[] } };
    expect(Buffer.from(handoff.data.token, 'base64').toString()).toMatch(/^[0-9a-f]{64}$/);
    expect(handoff.metadata.ownerReferences[0]!.name).toBe('outbound');
    expect(deployment.spec.template.spec.volumes).toContainEqual({ name: 'handoff', secret: { secretName: 'outbound-handoff', defaultMode: 0o440, items: [{ key: 'token', path: 'token' }] } });
    expect((deployment as { metadata: { managedFields?: { manager: string }[] } }).metadata.managedFields?.map((f) => f.manager)).toContain('mailfleet-operator');
  });

  it('a relay signs for the SenderDomains it selects: their keys are mounted and in its config', async () => {
    cluster = await startCluster();
    await start();
    await apply(cluster, secret('outbound-tls', { 'tls.crt': 'x', 'tls.key': 'y' }));
    await apply(cluster, secret('outbound-users', { users: 'app:x' }));
    await apply(cluster, senderDomain('example-com', 'example.com', { verification: { resolvers: ['127.0.0.1:9'] } }));
    await apply(cluster, mailRelay('outbound', { delivery: { egressAddresses: ['203.0.113.10/32'] } }));
    await waitFor(() => condition(get(cluster!, MR, 'outbound'), 'Ready')?.status === 'True', 'Ready');
    const config = (cluster.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'mail', name: 'outbound-config' }) as unknown as { data: Record<string, string> }).data['relay.yaml']!;
    expect(config).toContain('privateKeyFile: /etc/mailfleet/dkim/example.com/mailfleet-1-rsa.pem');
    // The relay's egress address reaches the domain's SPF record.
    await waitFor(() => get(cluster!, SD, 'example-com')?.status?.records?.[0]?.value === 'v=spf1 ip4:203.0.113.10/32 ~all', 'SPF with the relay address');
  });

  it('retries a reconcile whose write fails, with backoff', async () => {
    cluster = await startCluster();
    cluster.failNext({ resource: 'senderdomains', subresource: 'status' }, { code: 409, reason: 'Conflict', times: 2 });
    const op = await start();
    await apply(cluster, senderDomain('retry-com', 'retry.com', { verification: { resolvers: ['127.0.0.1:9'] } }));
    await waitFor(() => condition(get(cluster!, SD, 'retry-com'), 'KeysReady')?.status === 'True', 'KeysReady after the conflicts', 20_000);
    const errors = (await op.metrics.reconciles.get()).values.find((v) => v.labels.controller === 'senderdomain' && v.labels.result === 'error')?.value;
    expect(errors).toBe(2);
    // Still one pair of keys: the failed attempts did not each make keys.
    expect(get(cluster, SD, 'retry-com')!.status.activeSelectors).toBe('mailfleet-1-rsa,mailfleet-1-ed');
  });

  it('an operator restart resumes without making a second DKIM key, and is quiet when nothing changes', async () => {
    cluster = await startCluster();
    const first = await start();
    await apply(cluster, senderDomain('example-com', 'example.com', { verification: { resolvers: ['127.0.0.1:9'] } }));
    await waitFor(() => condition(get(cluster!, SD, 'example-com'), 'KeysReady')?.status === 'True', 'KeysReady');
    const keys = (cluster.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'mail', name: 'example-com-dkim' }) as Obj).data;
    await first.stop();
    operators.splice(operators.indexOf(first), 1);

    cluster.resetRequests();
    await start();
    await new Promise((r) => setTimeout(r, 1500));
    expect((cluster.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'mail', name: 'example-com-dkim' }) as Obj).data).toEqual(keys);
    expect(get(cluster, SD, 'example-com')!.status.activeSelectors).toBe('mailfleet-1-rsa,mailfleet-1-ed');
    // After its first look, a restarted operator writes nothing: no apply, no status patch.
    const writes = cluster.requests().filter((r) => !['get', 'list', 'watch'].includes(r.verb));
    expect(writes.map((r) => `${r.verb} ${r.path}`)).toEqual([]);
  });

  it('two operator replicas never both reconcile; the standby takes over when the leader stops', async () => {
    cluster = await startCluster();
    const le = (identity: string) => ({ leaderElection: { enabled: true, namespace: 'default', name: 'mailfleet-operator', identity, leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 200 } });
    const a = await start(le('a'));
    await waitFor(() => a.isLeader(), 'a leads');
    const b = await start(le('b'));
    await new Promise((r) => setTimeout(r, 800));
    expect([a.isLeader(), b.isLeader()]).toEqual([true, false]);

    await apply(cluster, senderDomain('one-com', 'one.com', { verification: { resolvers: ['127.0.0.1:9'] } }));
    await waitFor(() => condition(get(cluster!, SD, 'one-com'), 'KeysReady')?.status === 'True', 'reconciled by the leader');
    const reconciles = async (op: RunningOperator) => (await op.metrics.reconciles.get()).values.reduce((n, v) => n + v.value, 0);
    // The counter goes up once the reconcile returns, a moment after its status write is visible.
    await waitFor(async () => (await reconciles(a)) > 0, 'the leader counts its reconcile');
    expect(await reconciles(a)).toBeGreaterThan(0);
    expect(await reconciles(b)).toBe(0);

    await a.stop();
    operators.splice(operators.indexOf(a), 1);
    // a gave the lease up: b leads well before the lease would have expired.
    await waitFor(() => b.isLeader(), 'b takes over', 5000);
    await apply(cluster, senderDomain('two-com', 'two.com', { verification: { resolvers: ['127.0.0.1:9'] } }));
    await waitFor(() => condition(get(cluster!, SD, 'two-com'), 'KeysReady')?.status === 'True', 'reconciled by the new leader');
    const lease = cluster.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: 'default', name: 'mailfleet-operator' }) as Obj;
    expect(lease.spec.holderIdentity).toBe('b');
  });
});

describe('operator: optional CRDs and broken watches', () => {
  let cluster: KubeEmulator | undefined;
  let op: RunningOperator | undefined;
  afterEach(async () => {
    await op?.stop();
    await cluster?.stop();
  });

  it('makes a ServiceMonitor and a DNSEndpoint where those CRDs exist', async () => {
    cluster = await startCluster({ thirdPartyCrds: ['ServiceMonitor', 'DNSEndpoint'] });
    op = await startTestOperator(cluster);
    await apply(cluster, secret('outbound-tls', { 'tls.crt': 'x', 'tls.key': 'y' }));
    await apply(cluster, secret('outbound-users', { users: 'app:x' }));
    await apply(cluster, senderDomain('example-com', 'example.com', { dnsEndpoint: { enabled: true, ttl: 600 }, verification: { resolvers: ['127.0.0.1:9'] } }));
    await apply(cluster, mailRelay('outbound'));
    await waitFor(() => !!cluster!.get({ apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', namespace: 'mail', name: 'outbound' }), 'the ServiceMonitor');
    await waitFor(() => !!cluster!.get({ apiVersion: 'externaldns.k8s.io/v1alpha1', kind: 'DNSEndpoint', namespace: 'mail', name: 'example-com-records' }), 'the DNSEndpoint');
    const endpoint = cluster.get({ apiVersion: 'externaldns.k8s.io/v1alpha1', kind: 'DNSEndpoint', namespace: 'mail', name: 'example-com-records' }) as unknown as { spec: { endpoints: { dnsName: string; recordType: string; targets: string[]; recordTTL: number }[] } };
    expect(endpoint.spec.endpoints.map((e) => `${e.recordType} ${e.dnsName} ${e.recordTTL}`)).toEqual(['TXT example.com 600', 'TXT mailfleet-1-rsa._domainkey.example.com 600', 'TXT mailfleet-1-ed._domainkey.example.com 600', 'TXT _dmarc.example.com 600']);
    expect(endpoint.spec.endpoints[1]!.targets[0]).toMatch(/^v=DKIM1; k=rsa; p=MII/);
  });

  it('keeps reconciling after its watches are cut and their history is gone (410 Gone, relist)', async () => {
    cluster = await startCluster();
    op = await startTestOperator(cluster);
    await apply(cluster, senderDomain('before-com', 'before.com', { verification: { resolvers: ['127.0.0.1:9'] } }));
    await waitFor(() => condition(get(cluster!, SD, 'before-com'), 'KeysReady')?.status === 'True', 'the first domain');
    cluster.compactHistory();
    cluster.closeWatches();
    await apply(cluster, senderDomain('after-com', 'after.com', { verification: { resolvers: ['127.0.0.1:9'] } }));
    await waitFor(() => condition(get(cluster!, SD, 'after-com'), 'KeysReady')?.status === 'True', 'a domain created after the watches broke', 15_000);
  });
});
