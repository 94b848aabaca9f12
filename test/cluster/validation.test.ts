/**
 * What a mistake in a manifest meets on a real cluster, as docs/operator.md#field-validation
 * says: kubectl (v1.33, the layer package) against the v1.20 API server, which has neither
 * server-side field validation (1.25+) nor CEL (1.25+, stripped from the chart's CRDs here),
 * and the operator as the last line for what the server let through.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AnyObject } from '../../operator/kube/client.js';
import type { RunningOperator } from '../../operator/main.js';
import { adminClient, describeCluster, ensureNamespace, eventually, installChartOnce, kubectl, startChartOperator, type ChartInstall } from './harness.js';

type Obj = AnyObject & { spec?: Record<string, unknown>; status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } };

describeCluster('field validation on a real kube-apiserver', (cluster) => {
  let chart: ChartInstall;
  const ns = `mf-validation-${process.pid}`;
  let operator: RunningOperator | undefined;
  beforeAll(async () => {
    chart = await installChartOnce(cluster());
    await ensureNamespace(cluster(), ns);
  });
  afterAll(async () => {
    await operator?.stop();
    await adminClient(cluster()).delete({ apiVersion: 'v1', kind: 'Namespace', name: ns });
  });
  const relay = (name: string, spec: object) => JSON.stringify({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', metadata: { name, namespace: ns }, spec });
  const get = (name: string) => adminClient(cluster()).get<Obj>({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: ns, name });

  it('v1.20 has no server-side field validation: kubectl (--validate=strict, its default) refuses a misspelled field on the client from the published OpenAPI; with --validate=false the server drops it; a server-side apply is refused by the server itself', async () => {
    // kubectl's client-side check reads the OpenAPI the server publishes, which takes the CRD's
    // schema a few seconds after the CRD is established: until then nothing is checked.
    await eventually(async () => JSON.stringify(await adminClient(cluster()).raw('GET', '/openapi/v2')).includes('io.mailfleet.v1alpha1.MailRelay'), 'the MailRelay schema in /openapi/v2');
    const typo = { autoscaling: { enabled: true, maxReplica: 4 } };
    const strict = await kubectl(cluster(), ['apply', '-f', '-'], { input: relay('typo', typo) });
    expect(strict.code).not.toBe(0);
    expect(strict.stderr).toContain('unknown field "maxReplica" in io.mailfleet.v1alpha1.MailRelay.spec.autoscaling');
    expect(await get('typo')).toBeUndefined();

    const loose = await kubectl(cluster(), ['apply', '--validate=false', '-f', '-'], { input: relay('typo', typo) });
    expect(loose.code, loose.stderr).toBe(0);
    const stored = await get('typo');
    // Pruned, and the default stands: the user meant 4 and gets 10, with no word about it.
    expect(stored?.spec?.autoscaling).toMatchObject({ enabled: true, maxReplicas: 10 });
    expect(stored?.spec?.autoscaling).not.toHaveProperty('maxReplica');

    // The server's own verdict on a server-side apply (what a GitOps controller gets), without kubectl's check first.
    const serverSide = await kubectl(cluster(), ['apply', '--server-side', '--validate=false', '-f', '-'], { input: relay('typo-ssa', typo) });
    expect(serverSide.code).not.toBe(0);
    expect(serverSide.stderr).toContain('.spec.autoscaling.maxReplica: field not declared in schema');
    expect(await get('typo-ssa')).toBeUndefined();
  });

  it('minReplicas above maxReplicas, which v1.20 stores (its CRD has no CEL rule), is reported by the operator: Degraded and not Ready, InvalidSpec, naming the field', async () => {
    const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: relay('inverted', { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 3 } }) });
    expect(applied.code, applied.stderr).toBe(0);
    operator = await startChartOperator(cluster(), chart, ns);
    const message = 'spec.autoscaling.minReplicas: minReplicas must not exceed maxReplicas';
    await eventually(async () => (await get('inverted'))?.status?.conditions?.find((c) => c.type === 'Degraded')?.message === message, 'Degraded for the inverted replicas');
    const conditions = (await get('inverted'))?.status?.conditions;
    expect(conditions?.find((c) => c.type === 'Degraded')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    expect(conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'InvalidSpec', message });
    expect(await adminClient(cluster()).get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name: 'inverted' })).toBeUndefined();
  });
});
