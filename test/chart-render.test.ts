// The Helm chart through the real helm v4: lint, package, the rendered kinds (each valid against the Kubernetes schemas), the CRDs, and the operator Deployment, Service, PDB and probes.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import YAML from 'yaml';
import { describeHelm, runHelm } from './peers/helm.js';
import { CHART, CHART_LABEL, customValuesFile, expectAllValid, find, FULLNAME, kindOf, NS, type Obj, one, parseManifests, RELEASE, root, template, tmp, useCustomValues, validateServiceMonitor, validationErrors } from './support/chart.js';

describeHelm('Helm chart charts/mailfleet (real helm, kubernetes-models validation)', () => {
  useCustomValues();

  it('is helm 4 from the layer package (the version the docs promise)', async () => {
    const r = await runHelm(['version', '--short']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^v4\.\d+\.\d+/);
  });

  it('passes helm lint --strict with the default values and with a non-default values file', async () => {
    const defaults = await runHelm(['lint', '--strict', CHART]);
    expect(defaults.code, defaults.stdout + defaults.stderr).toBe(0);
    expect(defaults.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(defaults.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
    const custom = await runHelm(['lint', '--strict', CHART, '--values', customValuesFile]);
    expect(custom.code, custom.stdout + custom.stderr).toBe(0);
    expect(custom.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
    // lint --strict does fail: a value the schema refuses.
    const bad = await runHelm(['lint', '--strict', CHART, '--set', 'logLevel=loud']);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout + bad.stderr).toContain('logLevel');
  });

  it('packages (helm package) with the CRDs, and the package renders what the directory renders', async () => {
    const pkg = await runHelm(['package', CHART, '--destination', tmp]);
    expect(pkg.code, pkg.stderr).toBe(0);
    const tgz = path.join(tmp, 'mailfleet-0.1.0.tgz');
    expect(pkg.stdout).toContain(tgz);
    const fromPackage = await runHelm(['template', RELEASE, tgz, '--namespace', NS, '--include-crds']);
    const fromDir = await runHelm(['template', RELEASE, CHART, '--namespace', NS, '--include-crds']);
    expect(fromPackage.code, fromPackage.stderr).toBe(0);
    expect(fromPackage.stdout).toBe(fromDir.stdout);
    expect(find(parseManifests(fromPackage.stdout), 'CustomResourceDefinition')).toHaveLength(2);
  });

  it('renders the expected kinds with the default values, each valid against the Kubernetes schemas', async () => {
    const objs = await template(['--include-crds']);
    expect(objs.map(kindOf).sort()).toEqual([
      'ClusterRole', // manager (all namespaces)
      'ClusterRoleBinding',
      'CustomResourceDefinition',
      'CustomResourceDefinition',
      'Deployment',
      'PodDisruptionBudget',
      'Role', // leader election
      'RoleBinding',
      'Service',
      'ServiceAccount',
    ]);
    expectAllValid(objs);
    for (const o of objs.filter((x) => x.kind !== 'CustomResourceDefinition')) {
      expect(o.metadata.labels, `${o.kind} ${o.metadata.name}`).toMatchObject({
        'helm.sh/chart': CHART_LABEL,
        'app.kubernetes.io/name': 'mailfleet',
        'app.kubernetes.io/instance': RELEASE,
        'app.kubernetes.io/version': '0.1.0',
        'app.kubernetes.io/managed-by': 'Helm',
      });
      const clusterScoped = o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding';
      expect(o.metadata.namespace, `${o.kind} ${o.metadata.name}`).toBe(clusterScoped ? undefined : NS);
    }
  });

  it('fails validation of a broken object (the validator is wired, not a no-op)', () => {
    expect(validationErrors({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { replicas: 'two', template: {} } }).join('\n')).toMatch(/selector|replicas/);
    expect(validationErrors({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name: 'x' }, rules: [{ apiGroups: [''], resources: ['pods'] }] }).join('\n')).toContain('verbs');
    expect(validationErrors({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } })).toEqual(['no validator for v1/ConfigMap: add its kubernetes-models class to MODELS']);
    expect(validateServiceMonitor({ metadata: { name: 'x' }, spec: { selector: { matchLabels: { a: 'b' } }, endpoints: [{ port: 'metrics', interval: '30 seconds' }] } })).toEqual(['spec.endpoints[0].interval is not a duration']);
  });

  it('includes the CRDs from crds/ unchanged (helm template --include-crds)', async () => {
    const files = readdirSync(path.join(root, 'crds')).filter((f) => f.endsWith('.yaml')).sort();
    expect(files).toEqual(['mailrelays.mailfleet.io.yaml', 'senderdomains.mailfleet.io.yaml']);
    // The chart's copies are byte for byte the generated files.
    expect(readdirSync(path.join(CHART, 'crds')).sort()).toEqual(files);
    for (const f of files) expect(readFileSync(path.join(CHART, 'crds', f), 'utf8'), f).toBe(readFileSync(path.join(root, 'crds', f), 'utf8'));
    // And helm renders them as they are.
    const rendered = find(await template(['--include-crds']), 'CustomResourceDefinition');
    const expected = files.map((f) => YAML.parse(readFileSync(path.join(root, 'crds', f), 'utf8')) as Obj);
    expect(rendered.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))).toEqual(expected);
    // Without --include-crds they are not templates (helm install creates them before the rest).
    expect(find(await template(), 'CustomResourceDefinition')).toEqual([]);
  });

  it('runs the operator hardened like the relay pods', async () => {
    const d = one(await template(), 'Deployment');
    expect(d.metadata.name).toBe(FULLNAME);
    expect(d.spec.replicas).toBe(2);
    const pod = d.spec.template.spec;
    expect(pod.securityContext).toEqual({ runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.automountServiceAccountToken).toBe(true);
    expect(pod.serviceAccountName).toBe(FULLNAME);
    expect(pod.hostNetwork ?? false).toBe(false);
    expect(pod.hostPID ?? false).toBe(false);
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0];
    expect(c.image).toBe('ghcr.io/mailfleet/mailfleet:0.1.0');
    expect(c.securityContext).toEqual({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] } });
    // The read-only root needs a writable /tmp.
    expect(c.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
    expect(pod.volumes).toEqual([{ name: 'tmp', emptyDir: { sizeLimit: '64Mi' } }]);
    expect(c.ports).toEqual([
      { name: 'metrics', containerPort: 8080, protocol: 'TCP' },
      { name: 'health', containerPort: 8081, protocol: 'TCP' },
    ]);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'health' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'health' });
    expect(c.args).toEqual(['operator', '--leader-elect', `--leader-election-namespace=${NS}`, '--metrics-port=8080', '--health-port=8081', '--log-level=info']);
    expect(c.env).toEqual([
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'MAILFLEET_RELAY_IMAGE', value: 'ghcr.io/mailfleet/mailfleet:0.1.0' },
    ]);
    expect(c.resources.requests).toEqual({ cpu: '50m', memory: '128Mi' });
    expect(c.resources.limits.memory).toBe('512Mi');
    const selector = d.spec.selector.matchLabels;
    expect(pod.topologySpreadConstraints).toEqual([{ topologyKey: 'kubernetes.io/hostname', maxSkew: 1, whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: selector } }]);
    // Nothing to roll on: no config checksum annotation.
    expect(d.spec.template.metadata.annotations).toBeUndefined();
    expect(d.spec.template.metadata.labels).toMatchObject(selector);
  });

  it('wires Service, PodDisruptionBudget and probes to the operator pods by name and label', async () => {
    const objs = await template();
    const d = one(objs, 'Deployment');
    const podLabels = d.spec.template.metadata.labels;
    const portNames = d.spec.template.spec.containers[0].ports.map((p: Obj) => p.name);
    const svc = one(objs, 'Service');
    expect(svc.metadata.name).toBe(`${FULLNAME}-metrics`);
    expect(podLabels).toMatchObject(svc.spec.selector);
    expect(svc.spec.ports).toEqual([{ name: 'metrics', port: 8080, targetPort: 'metrics', protocol: 'TCP' }]);
    expect(portNames).toContain(svc.spec.ports[0].targetPort);
    const pdb = one(objs, 'PodDisruptionBudget');
    expect(pdb.spec.minAvailable).toBe(1);
    expect(podLabels).toMatchObject(pdb.spec.selector.matchLabels);
    expect(one(objs, 'ServiceAccount').metadata.name).toBe(d.spec.template.spec.serviceAccountName);
    expect(find(objs, 'ServiceMonitor')).toEqual([]);
  });

  it('pins the image by digest when one is given', async () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const c = one(await template(['--set', `image.digest=${digest}`]), 'Deployment').spec.template.spec.containers[0];
    expect(c.image).toBe(`ghcr.io/mailfleet/mailfleet@${digest}`);
    expect(c.env.find((e: Obj) => e.name === 'MAILFLEET_RELAY_IMAGE').value).toBe(`ghcr.io/mailfleet/mailfleet@${digest}`);
  });
});
