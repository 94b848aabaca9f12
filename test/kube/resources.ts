/**
 * What the emulator serves: one ResourceDef per group/version/resource, and the registry that
 * finds them by URL segment or by apiVersion and kind. A def carries the per-kind rules the
 * generic request pipeline (registry.ts) asks about: generation, subresources, update
 * semantics, shapes, schema, server-side defaults and validation, and conversion to the stored
 * form where two API versions share objects.
 */
import { clone, getPath, type JsonObject, type KubeObject } from './json.js';
import type { JSONSchemaProps } from './schema.js';
import type { GoType } from './gotypes.js';
import type { FieldShape } from './shapes.js';
import { errors, type FieldError } from './status.js';

export interface ScaleSpec {
  specReplicasPath: string;
  statusReplicasPath: string;
  selector(obj: KubeObject): string | undefined;
}

/** Server-wide state a kind's defaulting needs (Service cluster IPs). */
export interface PrepareContext {
  allocateClusterIP(): string;
  now: Date;
}

export interface ResourceDef {
  group: string;
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  /** Defs with the same storage are views of the same objects (core and events.k8s.io Events, a CRD's versions). */
  storage: string;
  /** Served from a CustomResourceDefinition: no strategic merge patch, lists keep kind and apiVersion on items. */
  custom: boolean;
  /** Present where the kind keeps metadata.generation: whether an update changes what generation counts. */
  specChanged?: (before: KubeObject, after: KubeObject) => boolean;
  statusSubresource: boolean;
  /** /status writes keep metadata changes other than labels (v1.20's Deployment status strategy) instead of only status. */
  statusKeepsMetadata?: boolean;
  scale?: ScaleSpec;
  /** PUT of a missing object creates it (Endpoints, Events, Leases). */
  allowCreateOnUpdate: boolean;
  /** PUT without metadata.resourceVersion is allowed (built-ins) or refused (custom resources). */
  allowUnconditionalUpdate: boolean;
  /** Kind-specific finalizers outside metadata.finalizers that keep a deleted object (a Namespace's spec.finalizers). */
  blocksDeletion?: (obj: KubeObject) => boolean;
  /** DELETE answers with the object (Pods) rather than a Status. */
  returnDeletedObject: boolean;
  nameRule: 'subdomain' | 'label' | 'dns1035';
  shape: FieldShape;
  schema?: JSONSchemaProps;
  /** What a BOOKMARK of this kind carries besides kind, apiVersion and metadata: the Go zero value of its fields (built-ins). */
  bookmarkFields?: JsonObject;
  /** The Go type a built-in's request bodies decode into (its Time and MicroTime fields are parsed as the API server parses them). */
  goType?: GoType;
  /** Field selector labels beyond metadata.name and metadata.namespace. */
  fieldLabels: Record<string, (obj: KubeObject) => string | undefined>;
  /** Server-side defaults and server-set fields; runs on every create and update of the main resource and its subresources. */
  prepare?: (obj: KubeObject, old: KubeObject | undefined, ctx: PrepareContext) => void;
  validate?: (obj: KubeObject, old: KubeObject | undefined) => FieldError[];
  toStorage?: (view: KubeObject) => KubeObject;
  fromStorage?: (stored: KubeObject) => KubeObject;
}

export function apiVersionOf(def: Pick<ResourceDef, 'group' | 'version'>): string {
  return def.group ? `${def.group}/${def.version}` : def.version;
}

/** A stored object as this def shows it, with apiVersion and kind set (watch events and single reads carry them). */
export function toView(def: ResourceDef, stored: KubeObject): KubeObject {
  const view = def.fromStorage ? def.fromStorage(clone(stored)) : clone(stored);
  return { ...view, apiVersion: apiVersionOf(def), kind: def.kind };
}

export function toStorage(def: ResourceDef, view: KubeObject): KubeObject {
  return def.toStorage ? def.toStorage(clone(view)) : clone(view);
}

/** The object as its autoscaling/v1 Scale: the replicas at its scale paths, and its label selector. */
export function scaleOf(def: ResourceDef, obj: KubeObject): KubeObject {
  const scale = def.scale;
  if (!scale) throw errors.pathNotFound();
  const { name, namespace, uid, resourceVersion, creationTimestamp } = obj.metadata;
  const selector = scale.selector(obj);
  return {
    apiVersion: 'autoscaling/v1',
    kind: 'Scale',
    metadata: { name, ...(namespace ? { namespace } : {}), uid, resourceVersion, creationTimestamp },
    spec: { replicas: (getPath(obj, scale.specReplicasPath) as number | undefined) ?? 0 },
    status: { replicas: (getPath(obj, scale.statusReplicasPath) as number | undefined) ?? 0, ...(selector ? { selector } : {}) },
  };
}

export function selectableFields(def: ResourceDef, obj: KubeObject): Record<string, string | undefined> {
  const fields: Record<string, string | undefined> = { 'metadata.name': obj.metadata.name };
  if (def.namespaced) fields['metadata.namespace'] = obj.metadata.namespace;
  for (const [label, read] of Object.entries(def.fieldLabels)) fields[label] = read(obj);
  return fields;
}

/** Kube's version order for preferred versions: GA before beta before alpha, higher numbers first. */
function versionPriority(version: string): [number, number, number] {
  const match = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(version);
  if (!match) return [0, 0, 0];
  const stability = match[2] === 'alpha' ? 1 : match[2] === 'beta' ? 2 : 3;
  return [stability, Number(match[1]), Number(match[3] ?? 0)];
}

function compareVersions(a: string, b: string): number {
  const [pa, pb] = [versionPriority(a), versionPriority(b)];
  for (let i = 0; i < 3; i++) if ((pa[i] as number) !== (pb[i] as number)) return (pb[i] as number) - (pa[i] as number);
  return a.localeCompare(b);
}

export class ResourceRegistry {
  private defs: ResourceDef[] = [];

  add(def: ResourceDef): void {
    this.defs = this.defs.filter((d) => !(d.group === def.group && d.version === def.version && d.plural === def.plural));
    this.defs.push(def);
  }

  removeStorage(storage: string): void {
    this.defs = this.defs.filter((d) => d.storage !== storage);
  }

  all(): readonly ResourceDef[] {
    return this.defs;
  }

  find(group: string, version: string, plural: string): ResourceDef | undefined {
    return this.defs.find((d) => d.group === group && d.version === version && d.plural === plural);
  }

  findByKind(apiVersion: string, kind: string): ResourceDef | undefined {
    return this.defs.find((d) => apiVersionOf(d) === apiVersion && d.kind === kind);
  }


  servesGroupVersion(group: string, version: string): boolean {
    return this.defs.some((d) => d.group === group && d.version === version);
  }

  /** Group name to its served versions, preferred first. */
  groups(): Map<string, string[]> {
    const groups = new Map<string, Set<string>>();
    for (const def of this.defs) groups.set(def.group, (groups.get(def.group) ?? new Set()).add(def.version));
    return new Map([...groups].map(([group, versions]) => [group, [...versions].sort(compareVersions)]));
  }

  /** One def per stored object set, so a walk over everything visits each object once. */
  storages(): ResourceDef[] {
    const seen = new Map<string, ResourceDef>();
    for (const def of this.defs) if (!seen.has(def.storage)) seen.set(def.storage, def);
    return [...seen.values()];
  }
}
