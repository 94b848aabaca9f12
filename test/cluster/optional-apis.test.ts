/**
 * The optional APIs on a real kube-apiserver: the Prometheus Operator's ServiceMonitor and
 * external-dns's DNSEndpoint CRDs installed while the operator runs. Discovery finds them and
 * the operator makes what it could not make before, then keeps it (a deleted one is made
 * again). The CRDs are removed at the end, so the other suites see a cluster without them.
 */
import { afterAll, afterEach, expect, it } from 'vitest';
import type { AnyObject } from '../../operator/kube/client.js';
import type { RunningOperator } from '../../operator/main.js';
import { wellKnownCrds } from '../kube/crd.js';
import { adminClient, describeCluster, ensureNamespace, eventually, installChartOnce, kubectlApply, serves, startChartOperator } from './harness.js';

const GROUP = 'mailfleet.io/v1alpha1';
type Condition = { type: string; status: string; reason: string; message: string };

describeCluster('optional APIs appearing on a real kube-apiserver', (cluster) => {
  const ns = `mf-optional-${process.pid}`;
  let operator: RunningOperator | undefined;
  const crds = [wellKnownCrds.ServiceMonitor(), wellKnownCrds.DNSEndpoint()] as unknown as AnyObject[];
  afterEach(async () => {
    await operator?.stop();
  });
  afterAll(async () => {
    const client = adminClient(cluster());
    for (const crd of crds) await client.delete({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: crd.metadata.name });
    await eventually(async () => !(await serves(cluster(), 'monitoring.coreos.com/v1')) && !(await serves(cluster(), 'externaldns.k8s.io/v1alpha1')), 'the optional APIs gone again', 60_000);
    await client.delete({ apiVersion: 'v1', kind: 'Namespace', name: ns });
  });

  it('makes the ServiceMonitor and the DNSEndpoint once their CRDs are installed, and makes a deleted one again', async () => {
    const chart = await installChartOnce(cluster());
    await ensureNamespace(cluster(), ns);
    const client = adminClient(cluster());
    operator = await startChartOperator(cluster(), chart, ns, { discoveryIntervalMs: 1000 });
    await kubectlApply(cluster(), [
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'outbound-tls', namespace: ns }, stringData: { 'tls.crt': 'x', 'tls.key': 'y' } },
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'outbound-users', namespace: ns }, stringData: { users: 'app:x' } },
      { apiVersion: GROUP, kind: 'SenderDomain', metadata: { name: 'example-com', namespace: ns, labels: { 'mailfleet.io/relay': 'outbound' } }, spec: { domain: 'example.com', dnsEndpoint: { enabled: true, ttl: 600 }, verification: { resolvers: ['127.0.0.1:9'] } } },
      { apiVersion: GROUP, kind: 'MailRelay', metadata: { name: 'outbound', namespace: ns }, spec: { tlsSecretName: 'outbound-tls', usersSecretName: 'outbound-users', senderDomainSelector: { matchLabels: { 'mailfleet.io/relay': 'outbound' } } } },
    ] as unknown as AnyObject[]);
    const domainDegraded = async () => ((await client.get<AnyObject & { status?: { conditions?: Condition[] } }>({ apiVersion: GROUP, kind: 'SenderDomain', namespace: ns, name: 'example-com' }))?.status?.conditions ?? []).find((c) => c.type === 'Degraded');
    await eventually(async () => (await domainDegraded())?.reason === 'APINotServed', 'the SenderDomain says external-dns is missing');

    await kubectlApply(cluster(), crds);
    const endpoint = () => client.get<AnyObject & { spec: { endpoints: { dnsName: string; recordType: string; recordTTL: number; targets: string[] }[] } }>({ apiVersion: 'externaldns.k8s.io/v1alpha1', kind: 'DNSEndpoint', namespace: ns, name: 'example-com-records' });
    const monitor = () => client.get({ apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', namespace: ns, name: 'outbound' });
    await eventually(async () => !!(await monitor()) && !!(await endpoint()), 'the ServiceMonitor and the DNSEndpoint', 30_000);
    expect((await endpoint())!.spec.endpoints.map((e) => `${e.recordType} ${e.dnsName} ${e.recordTTL}`)).toEqual(['TXT example.com 600', 'TXT mailfleet-1-rsa._domainkey.example.com 600', 'TXT mailfleet-1-ed._domainkey.example.com 600', 'TXT _dmarc.example.com 600']);
    await eventually(async () => (await domainDegraded())?.status === 'False', 'the SenderDomain no longer Degraded');

    const before = (await monitor())!.metadata.uid;
    await client.delete({ apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', namespace: ns, name: 'outbound' });
    await eventually(async () => {
      const again = await monitor();
      return !!again && again.metadata.uid !== before;
    }, 'the ServiceMonitor made again');
  });
});
