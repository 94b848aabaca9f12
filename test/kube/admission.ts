/**
 * What kube-apiserver does to a request's object before the write pipeline runs: decode it and
 * check its identity against the URL, refuse a Time or MicroTime Go would not parse (in the POST
 * or PUT body, or as a patch leaves it), refuse content in a missing or terminating namespace,
 * prune and default by a CRD's schema, and validate. Pure over the resource definition.
 */
import { clone, isObject, type Json, type JsonObject, type KubeObject } from './json.js';
import { conversionError, decodeError, goValueString, patchedJson, touchedByJsonPatch } from './godecode.js';
import { apiVersionOf, type ResourceDef, type ResourceRegistry } from './resources.js';
import { applyDefaults, pruneUnknownFields, validateAgainstSchema } from './schema.js';
import { errors, type FieldError } from './status.js';
import type { Store } from './store.js';
import { objectMetaErrors } from './validation.js';

export const CONTENT_TYPES = {
  json: 'application/json',
  mergePatch: 'application/merge-patch+json',
  jsonPatch: 'application/json-patch+json',
  strategicMergePatch: 'application/strategic-merge-patch+json',
  apply: 'application/apply-patch+yaml',
} as const;

function sortKeys(value: Json): Json {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k] as Json)]));
}

/**
 * What the API server's decoder refuses in a POST or PUT body before anything else happens: a
 * built-in's Time or MicroTime field that Go's time.Parse does not take (400, json-iterator's
 * words). YAML bodies are decoded after conversion to JSON (keys sorted), as the server does.
 */
export function checkBody(def: ResourceDef, contentType: string, raw: string, parsed: unknown): void {
  if (!def.goType) return;
  const json = contentType === 'application/yaml' ? JSON.stringify(sortKeys(parsed as Json)) : raw;
  const error = decodeError(def.goType, json);
  if (error !== undefined) throw errors.badRequest(`${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: ${error}`);
}

/** A patched built-in whose Time or MicroTime fields do not parse: 422 on the field "patch", as the patch handler answers. */
export function checkPatched(def: ResourceDef, contentType: string, document: Json, patched: Json): void {
  if (!def.goType) return;
  if (contentType === CONTENT_TYPES.strategicMergePatch) {
    const error = conversionError(def.goType, patched);
    if (error !== undefined) throw errors.invalidPatch(goValueString(document), error);
    return;
  }
  const touched = contentType === CONTENT_TYPES.jsonPatch ? touchedByJsonPatch(document) : document;
  const json = patchedJson(def.goType, patched, touched);
  const error = decodeError(def.goType, json);
  if (error !== undefined) throw errors.invalidPatch(json, error);
}

/** Parses and checks a request body: apiVersion and kind, namespace and name against the URL. */
export function decodeObject(def: ResourceDef, body: unknown, namespace: string | undefined, urlName?: string): KubeObject {
  if (!isObject(body)) throw errors.badRequest('the body of the request was not a JSON object');
  const obj = clone(body) as unknown as KubeObject;
  const apiVersion = apiVersionOf(def);
  if (obj.apiVersion !== undefined && obj.apiVersion !== apiVersion) {
    throw errors.badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${apiVersion})`);
  }
  if (obj.kind !== undefined && obj.kind !== def.kind) throw errors.badRequest(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${def.kind})`);
  obj.apiVersion = apiVersion;
  obj.kind = def.kind;
  if (!isObject(obj.metadata)) obj.metadata = {};
  const meta = obj.metadata;
  if (def.namespaced) {
    if (meta.namespace && meta.namespace !== namespace) throw errors.badRequest('the namespace of the provided object does not match the namespace sent on the request');
    meta.namespace = namespace;
  } else {
    delete meta.namespace;
  }
  if (urlName !== undefined) {
    if (meta.name && meta.name !== urlName) throw errors.badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${urlName})`);
    meta.name = urlName;
  }
  return obj;
}

/** Content may be created only in a namespace that exists and is not being deleted. */
export function requireLiveNamespace(resources: ResourceRegistry, store: Store, def: ResourceDef, namespace: string | undefined, name: string): void {
  if (!def.namespaced) return;
  const namespaces = resources.find('', 'v1', 'namespaces') as ResourceDef;
  const ns = store.get(namespaces.storage, undefined, namespace ?? '');
  if (!ns) throw errors.notFound({ group: '', plural: 'namespaces' }, namespace ?? '');
  if (ns.metadata.deletionTimestamp) {
    throw errors.forbidden({ group: def.group, plural: def.plural }, name, `unable to create new content in namespace ${namespace} because it is being terminated`, [
      { reason: 'NamespaceTerminating', message: `namespace ${namespace} is being terminated`, field: 'metadata.namespace' },
    ]);
  }
}

/** Prunes undeclared fields of a custom resource (answering per fieldValidation) and fills in schema defaults. */
export function applySchema(def: ResourceDef, obj: KubeObject, fieldValidation: string | undefined): string[] {
  if (!def.schema) return [];
  const pruned = pruneUnknownFields(obj as unknown as JsonObject, def.schema);
  const warnings = pruned.map((path) => `unknown field "${path}"`);
  if (pruned.length > 0 && fieldValidation === 'Strict') {
    throw errors.badRequest(`${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: strict decoding error: ${warnings.join(', ')}`);
  }
  applyDefaults(obj as unknown as JsonObject, def.schema);
  return fieldValidation === 'Ignore' ? [] : warnings;
}

/** The object's metadata, its CRD schema and its kind's own rules: every failure at once, 422. */
export function validateObject(def: ResourceDef, obj: KubeObject, old: KubeObject | undefined): void {
  const errs: FieldError[] = [
    ...objectMetaErrors(def, obj, old),
    ...(def.schema ? validateAgainstSchema(obj as unknown as JsonObject, def.schema) : []),
    ...(def.validate?.(obj, old) ?? []),
  ];
  if (errs.length > 0) throw errors.invalid(def.kind, def.group, obj.metadata.name ?? '', errs);
}
