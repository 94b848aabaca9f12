/**
 * The built-in kinds the operator touches, with the server-side behaviour a controller can see:
 * defaults (Deployment, pod template, Service, Secret, Namespace), what bumps generation, status
 * and scale subresources, create-on-update, immutable fields, their Go types (gotypes.ts: how
 * request bodies decode, Time and MicroTime among them), the validation
 * rules an operator is likely to trip over, and the two views of Events (core/v1 and
 * events.k8s.io/v1 share one stored object, converted field by field as the API server does).
 */
import { validateCrd } from './crd.js';
import { goTypes } from './gotypes.js';
import { deepEqual, getPath, isObject, type Json, type JsonObject, type KubeObject } from './json.js';
import type { PrepareContext, ResourceDef } from './resources.js';
import { formatLabelSelector, matchesLabels, parseLabelSelector, type LabelSelectorObject } from './selectors.js';
import { builtinShapes, type FieldShape } from './shapes.js';
import { fieldError, type FieldError } from './status.js';

interface BuiltinSpec {
  group: string;
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
  shortNames?: string[];
  storage?: string;
  specChanged?: ResourceDef['specChanged'];
  statusSubresource?: boolean;
  statusKeepsMetadata?: boolean;
  scale?: ResourceDef['scale'];
  allowCreateOnUpdate?: boolean;
  returnDeletedObject?: boolean;
  blocksDeletion?: ResourceDef['blocksDeletion'];
  nameRule?: ResourceDef['nameRule'];
  shape?: FieldShape;
  fieldLabels?: ResourceDef['fieldLabels'];
  prepare?: ResourceDef['prepare'];
  validate?: ResourceDef['validate'];
  toStorage?: ResourceDef['toStorage'];
  fromStorage?: ResourceDef['fromStorage'];
  bookmarkFields?: ResourceDef['bookmarkFields'];
}

function builtin(spec: BuiltinSpec): ResourceDef {
  return {
    listKind: `${spec.kind}List`,
    singular: spec.kind.toLowerCase(),
    shortNames: [],
    categories: [],
    storage: `${spec.group}/${spec.plural}`,
    custom: false,
    statusSubresource: false,
    allowCreateOnUpdate: false,
    allowUnconditionalUpdate: true,
    returnDeletedObject: false,
    nameRule: 'subdomain',
    shape: builtinShapes.generic,
    fieldLabels: {},
    goType: goTypes[`${spec.group}/${spec.plural}`],
    ...spec,
  };
}

function specOf(obj: KubeObject): JsonObject {
  if (!isObject(obj.spec)) obj.spec = {};
  return obj.spec as JsonObject;
}

function objects(value: Json | undefined): JsonObject[] {
  return Array.isArray(value) ? value.filter(isObject) : [];
}

const specDiffers = (a: KubeObject, b: KubeObject) => !deepEqual(a.spec, b.spec);

function imagePullPolicyFor(image: string): string {
  const withoutDigest = image.split('@')[0] as string;
  const lastSegment = withoutDigest.slice(withoutDigest.lastIndexOf('/') + 1);
  const tag = lastSegment.includes(':') ? lastSegment.slice(lastSegment.indexOf(':') + 1) : '';
  return image.includes('@') || (tag && tag !== 'latest') ? 'IfNotPresent' : 'Always';
}

function defaultPodSpec(spec: JsonObject): void {
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.securityContext ??= {};
  spec.schedulerName ??= 'default-scheduler';
  for (const container of [...objects(spec.containers), ...objects(spec.initContainers)]) {
    container.terminationMessagePath ??= '/dev/termination-log';
    container.terminationMessagePolicy ??= 'File';
    container.imagePullPolicy ??= imagePullPolicyFor(String(container.image ?? ''));
    container.resources ??= {};
    for (const port of objects(container.ports)) port.protocol ??= 'TCP';
  }
}

function defaultDeployment(obj: KubeObject): void {
  const spec = specOf(obj);
  spec.replicas ??= 1;
  spec.revisionHistoryLimit ??= 10;
  spec.progressDeadlineSeconds ??= 600;
  if (!isObject(spec.strategy)) spec.strategy = { type: 'RollingUpdate' };
  const strategy = spec.strategy as JsonObject;
  strategy.type ??= 'RollingUpdate';
  if (strategy.type === 'RollingUpdate') {
    if (!isObject(strategy.rollingUpdate)) strategy.rollingUpdate = {};
    const rolling = strategy.rollingUpdate as JsonObject;
    rolling.maxUnavailable ??= '25%';
    rolling.maxSurge ??= '25%';
  }
  const template = isObject(spec.template) ? spec.template : undefined;
  if (template && isObject(template.spec)) defaultPodSpec(template.spec);
}

function selectorMatchesLabels(selector: LabelSelectorObject, labels: Record<string, string>): boolean {
  return matchesLabels(parseLabelSelector(formatLabelSelector(selector)), labels);
}

function validateDeployment(obj: KubeObject, old: KubeObject | undefined): FieldError[] {
  const spec = specOf(obj);
  const errs: FieldError[] = [];
  const selector = spec.selector;
  const template = isObject(spec.template) ? spec.template : {};
  const labels = (isObject(template.metadata) && isObject(template.metadata.labels) ? template.metadata.labels : {}) as Record<string, string>;
  if (!isObject(selector) || (!isObject(selector.matchLabels) && !Array.isArray(selector.matchExpressions))) {
    errs.push(fieldError.required('spec.selector'));
  } else if (!selectorMatchesLabels(selector as LabelSelectorObject, labels)) {
    errs.push(fieldError.invalid('spec.template.metadata.labels', labels, '`selector` does not match template `labels`'));
  }
  if (old && !deepEqual(isObject(old.spec) ? old.spec.selector : undefined, selector)) {
    errs.push(fieldError.invalid('spec.selector', selector, 'field is immutable'));
  }
  if (typeof spec.replicas === 'number' && spec.replicas < 0) errs.push(fieldError.invalid('spec.replicas', spec.replicas, 'must be greater than or equal to 0'));
  if (!isObject(template.spec) || objects(template.spec.containers).length === 0) errs.push(fieldError.required('spec.template.spec.containers'));
  return errs;
}

function defaultService(obj: KubeObject, old: KubeObject | undefined, ctx: PrepareContext): void {
  const spec = specOf(obj);
  spec.type ??= 'ClusterIP';
  spec.sessionAffinity ??= 'None';
  for (const port of objects(spec.ports)) {
    port.protocol ??= 'TCP';
    port.targetPort ??= port.port ?? null;
  }
  if (spec.type === 'ExternalName') return;
  const oldSpec = old && isObject(old.spec) ? old.spec : undefined;
  // An update that omits the allocated IP keeps it, as the Service REST storage does.
  spec.clusterIP ??= oldSpec?.clusterIP ?? ctx.allocateClusterIP();
  spec.clusterIPs ??= oldSpec?.clusterIPs ?? [spec.clusterIP];
  spec.ipFamilies ??= ['IPv4'];
  spec.ipFamilyPolicy ??= 'SingleStack';
  spec.internalTrafficPolicy ??= 'Cluster';
  obj.status ??= { loadBalancer: {} };
}

function validateService(obj: KubeObject, old: KubeObject | undefined): FieldError[] {
  const spec = specOf(obj);
  const errs: FieldError[] = [];
  if (spec.type !== 'ExternalName' && spec.clusterIP !== 'None' && objects(spec.ports).length === 0) errs.push(fieldError.required('spec.ports'));
  const oldIP = old && isObject(old.spec) ? old.spec.clusterIP : undefined;
  if (oldIP !== undefined && spec.clusterIP !== oldIP) errs.push(fieldError.invalid('spec.clusterIP', spec.clusterIP ?? '', 'field is immutable'));
  return errs;
}

function prepareSecret(obj: KubeObject): void {
  obj.type ??= 'Opaque';
  if (isObject(obj.stringData)) {
    const data = (isObject(obj.data) ? obj.data : {}) as JsonObject;
    for (const [key, value] of Object.entries(obj.stringData)) data[key] = Buffer.from(String(value)).toString('base64');
    obj.data = data;
  }
  delete obj.stringData;
}

function preparePod(obj: KubeObject, old: KubeObject | undefined): void {
  defaultPodSpec(specOf(obj));
  if (!old && !isObject(obj.status)) obj.status = { phase: 'Pending', qosClass: 'BestEffort' };
}

function prepareNamespace(obj: KubeObject, old: KubeObject | undefined): void {
  obj.metadata.labels = { ...obj.metadata.labels, 'kubernetes.io/metadata.name': obj.metadata.name as string };
  // Only the namespace controller (through /finalize) changes spec.finalizers after creation.
  const spec = specOf(obj);
  if (old) spec.finalizers = (getPath(old, '.spec.finalizers') as Json | undefined) ?? [];
  else spec.finalizers ??= ['kubernetes'];
  if (!old) obj.status = { phase: 'Active' };
}

/** The namespace controller empties spec.finalizers (["kubernetes"]) once the namespace has no content left. */
function namespaceHasFinalizers(obj: KubeObject): boolean {
  const finalizers = getPath(obj, '.spec.finalizers');
  return Array.isArray(finalizers) && finalizers.length > 0;
}

function validatePodDisruptionBudget(obj: KubeObject): FieldError[] {
  const spec = specOf(obj);
  return spec.minAvailable !== undefined && spec.maxUnavailable !== undefined
    ? [fieldError.invalid('spec', spec, 'minAvailable and maxUnavailable cannot be both set')]
    : [];
}

/** events.k8s.io/v1 field name and the core/v1 field it is stored as. */
const EVENT_FIELDS: [string, string][] = [
  ['regarding', 'involvedObject'],
  ['related', 'related'],
  ['note', 'message'],
  ['reason', 'reason'],
  ['type', 'type'],
  ['action', 'action'],
  ['reportingController', 'reportingComponent'],
  ['reportingInstance', 'reportingInstance'],
  ['eventTime', 'eventTime'],
  ['series', 'series'],
  ['deprecatedSource', 'source'],
  ['deprecatedFirstTimestamp', 'firstTimestamp'],
  ['deprecatedLastTimestamp', 'lastTimestamp'],
  ['deprecatedCount', 'count'],
];

function renameFields(obj: KubeObject, apiVersion: string, pairs: [string, string][]): KubeObject {
  const result: KubeObject = { apiVersion, kind: 'Event', metadata: obj.metadata };
  for (const [from, to] of pairs) if (obj[from] !== undefined) result[to] = obj[from];
  return result;
}

function involvedNamespaceErrors(obj: KubeObject, field: string): FieldError[] {
  const involved = obj[field];
  const namespace = isObject(involved) ? involved.namespace : undefined;
  return typeof namespace === 'string' && namespace !== '' && namespace !== obj.metadata.namespace
    ? [fieldError.invalid(`${field}.namespace`, namespace, 'does not match event.namespace')]
    : [];
}

/** ValidateEventCreate for requests through events.k8s.io/v1, which is strict where core/v1 is lenient. */
function validateEventsV1(obj: KubeObject): FieldError[] {
  const errs = involvedNamespaceErrors(obj, 'regarding');
  if (!obj.eventTime) errs.push(fieldError.required('eventTime'));
  if (obj.type !== 'Normal' && obj.type !== 'Warning') errs.push(fieldError.notSupported('type', obj.type ?? '', ['Normal', 'Warning']));
  for (const field of ['reportingController', 'reportingInstance', 'action', 'reason']) {
    if (!obj[field]) errs.push(fieldError.required(field));
    else if (String(obj[field]).length > 128) errs.push(fieldError.tooLong(field, 128));
  }
  if (typeof obj.note === 'string' && Buffer.byteLength(obj.note) > 1024) errs.push(fieldError.tooLong('note', 1024));
  return errs;
}

function deploymentScaleSelector(obj: KubeObject): string | undefined {
  const selector = getPath(obj, '.spec.selector');
  return isObject(selector) ? formatLabelSelector(selector as LabelSelectorObject) : undefined;
}

export function builtinResources(): ResourceDef[] {
  const core = { group: '', version: 'v1' };
  return [
    builtin({ ...core, kind: 'Namespace', plural: 'namespaces', namespaced: false, bookmarkFields: { spec: {}, status: {} }, shortNames: ['ns'], nameRule: 'label', statusSubresource: true, prepare: prepareNamespace, blocksDeletion: namespaceHasFinalizers, fieldLabels: { 'status.phase': (o) => getPath(o, '.status.phase') as string } }),
    builtin({ ...core, kind: 'ConfigMap', plural: 'configmaps', namespaced: true, shortNames: ['cm'] }),
    builtin({ ...core, kind: 'Secret', plural: 'secrets', namespaced: true, prepare: prepareSecret, fieldLabels: { type: (o) => o.type as string } }),
    builtin({ ...core, kind: 'Service', plural: 'services', namespaced: true, bookmarkFields: { spec: {}, status: { loadBalancer: {} } }, shortNames: ['svc'], nameRule: 'dns1035', statusSubresource: true, shape: builtinShapes.service, prepare: defaultService, validate: validateService }),
    builtin({ ...core, kind: 'Endpoints', plural: 'endpoints', namespaced: true, shortNames: ['ep'], allowCreateOnUpdate: true }),
    builtin({
      ...core,
      kind: 'Pod',
      plural: 'pods',
      bookmarkFields: { spec: { containers: null }, status: {} },
      namespaced: true,
      shortNames: ['po'],
      statusSubresource: true,
      returnDeletedObject: true,
      shape: builtinShapes.pod,
      prepare: preparePod,
      fieldLabels: { 'spec.nodeName': (o) => (getPath(o, '.spec.nodeName') as string | undefined) ?? '', 'status.phase': (o) => getPath(o, '.status.phase') as string },
    }),
    builtin({
      ...core,
      kind: 'Event',
      plural: 'events',
      namespaced: true,
      shortNames: ['ev'],
      allowCreateOnUpdate: true,
      storage: 'events',
      validate: (o) => involvedNamespaceErrors(o, 'involvedObject'),
      fieldLabels: Object.fromEntries(
        ['kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath']
          .map((f): [string, (o: KubeObject) => string | undefined] => [`involvedObject.${f}`, (o) => getPath(o, `.involvedObject.${f}`) as string | undefined])
          .concat([['reason', (o) => o.reason as string], ['type', (o) => o.type as string], ['source', (o) => getPath(o, '.source.component') as string]]),
      ),
    }),
    builtin({
      group: 'events.k8s.io',
      version: 'v1',
      kind: 'Event',
      plural: 'events',
      namespaced: true,
      shortNames: ['ev'],
      allowCreateOnUpdate: true,
      storage: 'events',
      validate: validateEventsV1,
      fieldLabels: { 'regarding.name': (o) => getPath(o, '.regarding.name') as string, 'regarding.kind': (o) => getPath(o, '.regarding.kind') as string, reason: (o) => o.reason as string, type: (o) => o.type as string },
      toStorage: (view) => renameFields(view, 'v1', EVENT_FIELDS),
      fromStorage: (stored) => renameFields(stored, 'events.k8s.io/v1', EVENT_FIELDS.map(([v1, coreName]) => [coreName, v1])),
    }),
    builtin({
      group: 'apps',
      version: 'v1',
      kind: 'Deployment',
      plural: 'deployments',
      bookmarkFields: { spec: { replicas: 0, selector: null, template: { metadata: { creationTimestamp: null }, spec: { containers: null } }, strategy: {} }, status: {} },
      namespaced: true,
      shortNames: ['deploy'],
      // The Deployment strategy also counts annotation changes: they are copied to ReplicaSets.
      specChanged: (a, b) => specDiffers(a, b) || !deepEqual(a.metadata.annotations ?? {}, b.metadata.annotations ?? {}),
      statusSubresource: true,
      statusKeepsMetadata: true,
      scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', selector: deploymentScaleSelector },
      shape: builtinShapes.deployment,
      prepare: defaultDeployment,
      validate: validateDeployment,
    }),
    builtin({ group: 'policy', version: 'v1', kind: 'PodDisruptionBudget', plural: 'poddisruptionbudgets', namespaced: true, bookmarkFields: { spec: {}, status: { disruptionsAllowed: 0, currentHealthy: 0, desiredHealthy: 0, expectedPods: 0 } }, shortNames: ['pdb'], specChanged: specDiffers, statusSubresource: true, shape: builtinShapes.podDisruptionBudget, validate: validatePodDisruptionBudget }),
    builtin({ group: 'coordination.k8s.io', version: 'v1', kind: 'Lease', plural: 'leases', namespaced: true, bookmarkFields: { spec: {} }, allowCreateOnUpdate: true }),
    builtin({
      group: 'apiextensions.k8s.io',
      version: 'v1',
      kind: 'CustomResourceDefinition',
      plural: 'customresourcedefinitions',
      bookmarkFields: { spec: { group: '', names: { plural: '', kind: '' }, scope: '', versions: null }, status: { conditions: null, acceptedNames: { plural: '', kind: '' }, storedVersions: null } },
      namespaced: false,
      shortNames: ['crd', 'crds'],
      specChanged: specDiffers,
      statusSubresource: true,
      shape: builtinShapes.customResourceDefinition,
      validate: validateCrd,
    }),
  ];
}
