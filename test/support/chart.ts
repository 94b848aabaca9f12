/**
 * The Helm chart suites' shared pieces (chart-*.test.ts): the release they render, a temp dir
 * with a values file that sets every non-default branch, `helm template` parsed into objects, and
 * validation of each rendered object against the Kubernetes OpenAPI schemas (kubernetes-models).
 * `tmp` and `customValuesFile` are live bindings, set by useCustomValues() before the suite.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
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
import { runHelm } from '../peers/helm.js';

export const root = path.resolve(import.meta.dirname, '../..');
export const CHART = path.join(root, 'charts/mailfleet');
export const RELEASE = 'mf';
export const NS = 'mailfleet-system';
export const FULLNAME = 'mf-mailfleet';
export const CHART_LABEL = 'mailfleet-0.1.0';

// Deliberately loose: the point is to read what helm rendered, field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = Record<string, any>;

/** Values a user might really set: every non-default branch of the templates. */
export const CUSTOM_VALUES = {
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

export let tmp: string;
export let customValuesFile: string;

/** Writes a values file into the suite's temp dir. */
function valuesFile(name: string, values: unknown): string {
  const file = path.join(tmp, name);
  writeFileSync(file, YAML.stringify(values));
  return file;
}

/** The suite's temp dir and the non-default values file in it: made before the calling suite, removed after. */
export function useCustomValues(): void {
  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'mailfleet-chart-'));
    customValuesFile = valuesFile('custom.yaml', CUSTOM_VALUES);
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
}

export function parseManifests(text: string): Obj[] {
  const docs = YAML.parseAllDocuments(text);
  for (const d of docs) if (d.errors.length) throw new Error(`helm rendered invalid YAML: ${d.errors[0]?.message}`);
  return docs.map((d) => d.toJS() as Obj | null).filter((o): o is Obj => o !== null && typeof o === 'object');
}

/** `helm template` of the chart; throws with helm's message when it fails. */
export async function template(args: string[] = []): Promise<Obj[]> {
  const r = await runHelm(['template', RELEASE, CHART, '--namespace', NS, ...args]);
  if (r.code !== 0) throw new Error(`helm template ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return parseManifests(r.stdout);
}

export const kindOf = (o: Obj) => `${o.kind}`;
export const find = (objs: Obj[], kind: string, name?: string) => objs.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
export function one(objs: Obj[], kind: string, name?: string): Obj {
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
export function validateServiceMonitor(o: Obj): string[] {
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
export function validationErrors(o: Obj): string[] {
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

export function expectAllValid(objs: Obj[]): void {
  const problems = objs.flatMap((o) => validationErrors(o).map((e) => `${o.kind} ${o.metadata?.namespace ?? ''}/${o.metadata?.name}: ${e}`));
  expect(problems).toEqual([]);
}
