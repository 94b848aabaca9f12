/**
 * CustomResourceDefinitions: validating one (the structural checks are not modelled beyond
 * required fields, naming, one storage version, and `pattern`s Go's regexp must compile),
 * turning its served versions into ResourceDefs, and the third-party CRDs the operator looks for (ServiceMonitor, DNSEndpoint),
 * abbreviated to the fields it writes.
 */
import { deepEqual, getPath, isObject, type JsonObject, type KubeObject } from './json.js';
import type { ResourceDef } from './resources.js';
import { compileGoRegexp } from './regexp.js';
import type { JSONSchemaProps } from './schema.js';
import { shapeFromSchema } from './shapes.js';
import { fieldError, type FieldError } from './status.js';

export const CRD_CLEANUP_FINALIZER = 'customresourcecleanup.apiextensions.k8s.io';

interface CrdVersion {
  name: string;
  served?: boolean;
  storage?: boolean;
  schema?: { openAPIV3Schema?: JSONSchemaProps };
  subresources?: { status?: object; scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath?: string } };
}

interface CrdSpec {
  group?: string;
  scope?: string;
  names?: { kind?: string; plural?: string; singular?: string; listKind?: string; shortNames?: string[]; categories?: string[] };
  versions?: CrdVersion[];
}

function crdSpec(crd: KubeObject): CrdSpec {
  return (isObject(crd.spec) ? crd.spec : {}) as CrdSpec;
}

export function validateCrd(crd: KubeObject): FieldError[] {
  const spec = crdSpec(crd);
  const errs: FieldError[] = [];
  if (!spec.group) errs.push(fieldError.required('spec.group'));
  if (!spec.names?.plural) errs.push(fieldError.required('spec.names.plural'));
  if (!spec.names?.kind) errs.push(fieldError.required('spec.names.kind'));
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') errs.push(fieldError.notSupported('spec.scope', spec.scope ?? '', ['Cluster', 'Namespaced']));
  if (spec.group && spec.names?.plural && crd.metadata.name !== `${spec.names.plural}.${spec.group}`) {
    errs.push(fieldError.invalid('metadata.name', crd.metadata.name, 'must be spec.names.plural+"."+spec.group'));
  }
  // Groups of the Kubernetes project need an approval annotation (KEP 1111), as the API server checks.
  const group = spec.group ?? '';
  const protectedGroup = ['k8s.io', 'kubernetes.io'].some((g) => group === g || group.endsWith(`.${g}`));
  if (protectedGroup && !crd.metadata.annotations?.['api-approved.kubernetes.io']) {
    errs.push(fieldError.required('metadata.annotations[api-approved.kubernetes.io]', 'protected groups must have approval annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111'));
  }
  const versions = spec.versions ?? [];
  if (versions.length === 0) errs.push(fieldError.required('spec.versions', 'must have exactly one version marked as storage version'));
  else if (versions.filter((v) => v.storage).length !== 1) {
    errs.push(fieldError.invalid('spec.versions', versions.map((v) => v.name), 'must have exactly one version marked as storage version'));
  }
  versions.forEach((version, i) => {
    if (!version.schema?.openAPIV3Schema) errs.push(fieldError.required(`spec.versions[${i}].schema.openAPIV3Schema`, 'schemas are required'));
  });
  return [...errs, ...patternErrors(versions)];
}

/**
 * Every `pattern` must compile as Go's regexp (RE2). v1.20 validates the internal form of the
 * CRD, where schemas identical in every version are one `spec.validation`: the paths name that
 * (`spec.validation.openAPIV3Schema.properties[spec]...`), else `spec.versions[i].schema...`.
 * The API server reports them sorted by path.
 */
function patternErrors(versions: CrdVersion[]): FieldError[] {
  const schemas = versions.map((v) => v.schema?.openAPIV3Schema);
  const shared = schemas.length > 0 && schemas.every((s) => s !== undefined && deepEqual(s, schemas[0]));
  const errs: FieldError[] = [];
  const roots: [string, JSONSchemaProps | undefined][] = shared ? [['spec.validation.openAPIV3Schema', schemas[0]]] : schemas.map((s, i) => [`spec.versions[${i}].schema.openAPIV3Schema`, s]);
  for (const [path, schema] of roots) if (isObject(schema)) collectPatternErrors(schema, path, errs);
  return errs.sort((a, b) => (a.field < b.field ? -1 : a.field > b.field ? 1 : 0));
}

function collectPatternErrors(schema: JSONSchemaProps, path: string, errs: FieldError[]): void {
  if (typeof schema.pattern === 'string' && schema.pattern !== '') {
    const { error } = compileGoRegexp(schema.pattern);
    if (error) errs.push(fieldError.invalid(`${path}.pattern`, schema.pattern, `must be a valid regular expression, but isn't: ${error}`));
  }
  const child = (node: unknown, at: string) => {
    if (isObject(node)) collectPatternErrors(node as JSONSchemaProps, at, errs);
  };
  for (const [name, prop] of Object.entries(schema.properties ?? {})) child(prop, `${path}.properties[${name}]`);
  const items = schema.items as unknown;
  if (Array.isArray(items)) items.forEach((item, i) => child(item, `${path}.items[${i}]`));
  else child(items, `${path}.items`);
  child(schema.additionalProperties, `${path}.additionalProperties`);
  for (const key of ['allOf', 'anyOf', 'oneOf'] as const) (schema[key] ?? []).forEach((branch, i) => child(branch, `${path}.${key}[${i}]`));
  child(schema.not, `${path}.not`);
}

function stripForGeneration(obj: KubeObject, withStatus: boolean): JsonObject {
  const { metadata: _metadata, status, ...rest } = obj;
  return (withStatus ? { ...rest, status } : rest) as JsonObject;
}

/** Go's %T of a decoded JSON value, as unstructured.NestedInt64 names it. */
function goTypeName(value: unknown): string {
  if (typeof value === 'number') return Number.isInteger(value) ? 'int64' : 'float64';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'bool';
  return Array.isArray(value) ? '[]interface {}' : 'map[string]interface {}';
}

/**
 * The scale subresource's paths checked on every write of a custom resource (apiextensions'
 * ValidateScaleSpec/ValidateScaleStatus): replicas are non-negative int32s, the selector a string.
 */
function scaleErrors(obj: KubeObject, scale: NonNullable<NonNullable<CrdVersion['subresources']>['scale']>): FieldError[] {
  const errs: FieldError[] = [];
  const replicas = (path: string) => {
    const value = getPath(obj, path);
    if (value === undefined || value === null) return;
    if (typeof value !== 'number' || !Number.isInteger(value)) errs.push(fieldError.invalid(path, 0, `${path} accessor error: ${typeof value === 'object' ? JSON.stringify(value) : String(value)} is of the type ${goTypeName(value)}, expected int64`));
    else if (value < 0) errs.push(fieldError.invalid(path, value, 'should be a non-negative integer'));
    else if (value > 2 ** 31 - 1) errs.push(fieldError.invalid(path, value, `should be less than or equal to ${2 ** 31 - 1}`));
  };
  replicas(scale.specReplicasPath);
  replicas(scale.statusReplicasPath);
  if (scale.labelSelectorPath) {
    const selector = getPath(obj, scale.labelSelectorPath);
    if (selector !== undefined && selector !== null && typeof selector !== 'string') {
      errs.push(fieldError.invalid(scale.labelSelectorPath, '', `${scale.labelSelectorPath} accessor error: ${JSON.stringify(selector)} is of the type ${goTypeName(selector)}, expected string`));
    }
  }
  return errs;
}

/** One ResourceDef per served version of a CRD, all sharing the storage of the CRD's resource. */
export function resourcesFromCrd(crd: KubeObject): ResourceDef[] {
  const spec = crdSpec(crd);
  const group = spec.group as string;
  const names = spec.names ?? {};
  const kind = names.kind as string;
  const plural = names.plural as string;
  const storageVersion = (spec.versions ?? []).find((v) => v.storage)?.name as string;
  return (spec.versions ?? [])
    .filter((version) => version.served !== false)
    .map((version): ResourceDef => {
      const schema = version.schema?.openAPIV3Schema;
      const statusSubresource = version.subresources?.status !== undefined;
      const scale = version.subresources?.scale;
      return {
        group,
        version: version.name,
        kind,
        listKind: names.listKind ?? `${kind}List`,
        plural,
        singular: names.singular ?? kind.toLowerCase(),
        namespaced: spec.scope === 'Namespaced',
        shortNames: names.shortNames ?? [],
        categories: names.categories ?? [],
        storage: `${group}/${plural}`,
        custom: true,
        // Generation counts every change outside metadata (and outside status, where status is a subresource).
        specChanged: (a, b) => !deepEqual(stripForGeneration(a, !statusSubresource), stripForGeneration(b, !statusSubresource)),
        statusSubresource,
        ...(scale
          ? {
              scale: {
                specReplicasPath: scale.specReplicasPath,
                statusReplicasPath: scale.statusReplicasPath,
                selector: (obj: KubeObject) => (scale.labelSelectorPath ? (getPath(obj, scale.labelSelectorPath) as string | undefined) : undefined),
              },
            }
          : {}),
        allowCreateOnUpdate: false,
        allowUnconditionalUpdate: false,
        returnDeletedObject: false,
        nameRule: 'subdomain',
        shape: shapeFromSchema(schema, true),
        ...(schema ? { schema } : {}),
        ...(scale ? { validate: (obj: KubeObject) => scaleErrors(obj, scale) } : {}),
        fieldLabels: {},
        toStorage: (view) => ({ ...view, apiVersion: `${group}/${storageVersion}` }),
      };
    });
}

const preserved: JSONSchemaProps = { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
const labelSelector: JSONSchemaProps = {
  type: 'object',
  properties: {
    matchLabels: { type: 'object', additionalProperties: { type: 'string' } },
    matchExpressions: { type: 'array', items: preserved },
  },
  'x-kubernetes-map-type': 'atomic',
};

function crdObject(group: string, version: string, kind: string, plural: string, spec: JSONSchemaProps, withStatus: boolean): KubeObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    // external-dns's own CRD carries the approval its k8s.io group needs.
    metadata: { name: `${plural}.${group}`, ...(group.endsWith('.k8s.io') ? { annotations: { 'api-approved.kubernetes.io': 'https://github.com/kubernetes-sigs/external-dns/pull/2007' } } : {}) },
    spec: {
      group,
      scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: version,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', properties: { spec, ...(withStatus ? { status: preserved } : {}) } } },
          ...(withStatus ? { subresources: { status: {} } } : {}),
        },
      ],
    },
  } as unknown as KubeObject;
}

export const wellKnownCrds = {
  /** monitoring.coreos.com/v1 ServiceMonitor (prometheus-operator), abbreviated. */
  ServiceMonitor: () =>
    crdObject('monitoring.coreos.com', 'v1', 'ServiceMonitor', 'servicemonitors', {
      type: 'object',
      required: ['selector'],
      properties: {
        jobLabel: { type: 'string' },
        endpoints: { type: 'array', items: preserved },
        selector: labelSelector,
        namespaceSelector: preserved,
        podTargetLabels: { type: 'array', items: { type: 'string' } },
      },
    }, false),
  /** externaldns.k8s.io/v1alpha1 DNSEndpoint (external-dns), abbreviated. */
  DNSEndpoint: () =>
    crdObject('externaldns.k8s.io', 'v1alpha1', 'DNSEndpoint', 'dnsendpoints', {
      type: 'object',
      properties: {
        endpoints: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              dnsName: { type: 'string' },
              recordType: { type: 'string' },
              recordTTL: { type: 'integer', format: 'int64' },
              targets: { type: 'array', items: { type: 'string' } },
              labels: { type: 'object', additionalProperties: { type: 'string' } },
              providerSpecific: { type: 'array', items: preserved },
              setIdentifier: { type: 'string' },
            },
          },
        },
      },
    }, true),
};
