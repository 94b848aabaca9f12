/**
 * Installing mailfleet on a real API server the way a user does: the chart's CRDs, RBAC and
 * operator Deployment (helm template, applied with the real kubectl), then resources that the
 * CRDs' schemas judge (RE2 patterns, not JavaScript's).
 */
import { expect, it } from 'vitest';
import type { AnyObject } from '../../operator/kube/client.js';
import { waitFor } from '../support/relay.js';
import { adminClient, chartFor, describeCluster, ensureNamespace, kubectl, kubectlApply } from './harness.js';

const NS = 'mailfleet-system';

describeCluster('install on a real kube-apiserver', (cluster) => {
  it('applies the chart (CRDs, RBAC, the operator Deployment) with kubectl, and the CRDs become Established', async () => {
    const chart = await chartFor(cluster(), 'mailfleet', NS);
    process.stdout.write(`server ${cluster().version}; not checked here:\n${chart.notChecked.map((n) => `  - ${n}`).join('\n')}\n`);
    await ensureNamespace(cluster(), NS);
    const result = await kubectlApply(cluster(), chart.objects);
    expect(result.stdout).toContain('customresourcedefinition.apiextensions.k8s.io/senderdomains.mailfleet.io');
    const client = adminClient(cluster());
    for (const name of ['mailrelays.mailfleet.io', 'senderdomains.mailfleet.io']) {
      await waitFor(async () => {
        const crd = await client.get<AnyObject & { status?: { conditions?: { type: string; status: string }[] } }>({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name });
        return crd?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
      }, `${name} Established`);
    }
    // The Deployment is real: the ReplicaSet controller made its pods (Pending: no kubelet here).
    await waitFor(async () => (await client.list('v1', 'Pod', NS, 'app.kubernetes.io/name=mailfleet')).items.length === (chart.operatorDeployment.spec as { replicas: number }).replicas, 'the operator pods created by the ReplicaSet controller');
  });

  it('judges SenderDomains by the CRD pattern (RE2): a domain with a leading hyphen is refused, a valid one taken', async () => {
    await ensureNamespace(cluster(), 'mf-install');
    const sd = (name: string, domain: string) => ({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', metadata: { name, namespace: 'mf-install' }, spec: { domain } });
    await kubectlApply(cluster(), [sd('good', 'mail.example.com') as AnyObject]);
    const bad = await kubectl(cluster(), ['apply', '-f', '-'], { input: JSON.stringify(sd('bad', '-bad.example.com')) });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/spec\.domain.*should match/);
  });

  // What the unit test (operator/api/crds.test.ts) checks with re2js, seen on the server itself.
  it('refuses a CRD whose pattern RE2 cannot compile (a lookahead), with the message re2js gives', async () => {
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'lookaheads.test.mailfleet.io' },
      spec: {
        group: 'test.mailfleet.io',
        names: { kind: 'Lookahead', plural: 'lookaheads' },
        scope: 'Namespaced',
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', properties: { domain: { type: 'string', pattern: '^(?!-)[a-z.-]+$' } } } } } } }],
      },
    };
    const result = await kubectl(cluster(), ['apply', '-f', '-'], { input: JSON.stringify(crd) });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?!`');
  });
});
