/**
 * Field shapes: how server-side apply and strategic merge patch treat each part of an object.
 * Maps are granular (each key owned and merged on its own) unless atomic; lists are atomic
 * unless they are associative (`listMap`, items identified by key fields) or sets. Built-in kinds
 * declare theirs below from the Go type markers (+listType, +listMapKey, +patchMergeKey,
 * +mapType/+structType=atomic); custom resources derive theirs from the CRD schema's
 * x-kubernetes-list-type / list-map-keys / map-type.
 */
import { isObject, type Json } from './json.js';
import type { JSONSchemaProps } from './schema.js';

export interface FieldShape {
  /** `deduced`: nothing is declared; objects act as granular maps and lists as atomic values. */
  readonly kind: 'map' | 'atomic' | 'listMap' | 'listSet' | 'deduced';
  /** Key fields of a listMap item (server-side apply identity). */
  readonly keys?: readonly string[];
  /** Values the server defaults key fields to, so `{containerPort: 25}` and `{containerPort: 25, protocol: TCP}` are one item. */
  readonly keyDefaults?: Readonly<Record<string, Json>>;
  /** The strategic-merge-patch key where it differs from keys[0] (container ports merge on containerPort alone). */
  readonly mergeKey?: string;
  field(name: string): FieldShape;
  item(): FieldShape;
}

const deduced: FieldShape = { kind: 'deduced', field: () => deduced, item: () => deduced };
export const atomic: FieldShape = { kind: 'atomic', field: () => atomic, item: () => atomic };
export const listSet: FieldShape = { kind: 'listSet', field: () => deduced, item: () => atomic };

function struct(children: Record<string, FieldShape> = {}, others: FieldShape = deduced): FieldShape {
  return { kind: 'map', field: (name) => children[name] ?? others, item: () => deduced };
}

export function listMap(
  keys: string[],
  item: FieldShape = deduced,
  options: { keyDefaults?: Record<string, Json>; mergeKey?: string } = {},
): FieldShape {
  return { kind: 'listMap', keys, ...options, field: () => deduced, item: () => item };
}

/** The treatment a value actually gets: a declared shape that does not fit the value's type falls back to atomic. */
export function effectiveKind(shape: FieldShape, value: unknown): 'map' | 'atomic' | 'listMap' | 'listSet' {
  if (shape.kind === 'deduced' || shape.kind === 'map') return isObject(value) ? 'map' : 'atomic';
  if (shape.kind === 'listMap' || shape.kind === 'listSet') return Array.isArray(value) ? shape.kind : 'atomic';
  return 'atomic';
}

/** The identity of a listMap item: its key fields (defaults filled in), sorted by name as FieldsV1 writes them. */
export function itemKey(shape: FieldShape, item: unknown): Record<string, Json> {
  const key: Record<string, Json> = {};
  for (const name of [...(shape.keys ?? [])].sort()) {
    const value = isObject(item) ? item[name] : undefined;
    const filled = value ?? shape.keyDefaults?.[name];
    if (filled !== undefined) key[name] = filled;
  }
  return key;
}

const conditions = listMap(['type']);

const objectMetaShape = struct({
  labels: struct(),
  annotations: struct(),
  finalizers: listSet,
  ownerReferences: listMap(['uid']),
});

const containerShape = struct({
  ports: listMap(['containerPort', 'protocol'], deduced, { keyDefaults: { protocol: 'TCP' }, mergeKey: 'containerPort' }),
  env: listMap(['name']),
  volumeMounts: listMap(['mountPath']),
});

const podSpecShape = struct({
  containers: listMap(['name'], containerShape),
  initContainers: listMap(['name'], containerShape),
  volumes: listMap(['name']),
  imagePullSecrets: listMap(['name']),
  hostAliases: listMap(['ip']),
  topologySpreadConstraints: listMap(['topologyKey', 'whenUnsatisfiable']),
});

const podTemplateShape = struct({ metadata: objectMetaShape, spec: podSpecShape });

export const builtinShapes = {
  generic: struct({ metadata: objectMetaShape }),
  pod: struct({ metadata: objectMetaShape, spec: podSpecShape, status: struct({ conditions }) }),
  deployment: struct({
    metadata: objectMetaShape,
    // metav1.LabelSelector is +structType=atomic.
    spec: struct({ selector: atomic, template: podTemplateShape }),
    status: struct({ conditions }),
  }),
  service: struct({
    metadata: objectMetaShape,
    spec: struct({
      ports: listMap(['port', 'protocol'], deduced, { keyDefaults: { protocol: 'TCP' }, mergeKey: 'port' }),
      selector: atomic, // +mapType=atomic
    }),
  }),
  podDisruptionBudget: struct({ metadata: objectMetaShape, spec: struct({ selector: atomic }), status: struct({ conditions }) }),
  customResourceDefinition: struct({
    metadata: objectMetaShape,
    spec: struct({ versions: listMap(['name']) }),
    status: struct({ conditions }),
  }),
};

/** A custom resource's shape from its structural schema. */
export function shapeFromSchema(schema: JSONSchemaProps | undefined, root = false): FieldShape {
  if (!schema) return deduced;
  if (schema.type === 'array') {
    const listType = schema['x-kubernetes-list-type'];
    if (listType === 'map') return listMap(schema['x-kubernetes-list-map-keys'] ?? [], shapeFromSchema(schema.items));
    if (listType === 'set') return listSet;
    return atomic;
  }
  if (schema.type === 'object' || schema.properties || root) {
    if (schema['x-kubernetes-map-type'] === 'atomic') return atomic;
    const children: Record<string, FieldShape> = {};
    for (const [name, child] of Object.entries(schema.properties ?? {})) children[name] = shapeFromSchema(child);
    if (root) children.metadata = objectMetaShape;
    const additional = schema.additionalProperties;
    return struct(children, typeof additional === 'object' ? shapeFromSchema(additional) : deduced);
  }
  return schema['x-kubernetes-preserve-unknown-fields'] ? deduced : atomic;
}
