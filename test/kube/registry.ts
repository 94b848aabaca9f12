/**
 * The API server's write semantics, independent of HTTP: create, update, the status and scale
 * subresources, the four patch types, delete with finalizers and propagation policies. Each write
 * runs the same pipeline as kube-apiserver's generic registry: decode and check identity
 * (admission.ts), reset what the client may not set, prune/default/validate, keep generation,
 * record field ownership, skip no-op writes, commit. Reads are here too; a list's selectors and
 * paging are in listing.ts, an object's Scale view in resources.ts.
 */
import { randomInt, randomUUID } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { applySchema, checkBody as checkRequestBody, checkPatched, CONTENT_TYPES, decodeObject, requireLiveNamespace, validateObject } from './admission.js';
import { recordUpdate, serverSideApply, type FieldManagerContext, type FieldPath } from './apply.js';
import { CRD_CLEANUP_FINALIZER, resourcesFromCrd } from './crd.js';
import { clone, deepEqual, getPath, isObject, setPath, timestamp, type Json, type JsonObject, type KubeObject, type ManagedFieldsEntry } from './json.js';
import { conversionError, normalizeTimes } from './godecode.js';
import { listObjects, type ListOptions } from './listing.js';
import { jsonPatch, mergePatch, PatchError, strategicMergePatch } from './patch.js';
import { apiVersionOf, scaleOf, toStorage, toView, type PrepareContext, type ResourceDef, type ResourceRegistry } from './resources.js';
import { ApiError, errors, fieldError, successStatus, type GroupResource } from './status.js';
import type { Store } from './store.js';

export { CONTENT_TYPES };
export type { ListOptions };

export interface WriteOptions {
  /** ?fieldManager; when absent, non-apply writes are recorded under the User-Agent's product name, as the server does. */
  fieldManager?: string;
  userAgent?: string;
  dryRun: boolean;
  fieldValidation?: string;
}

export interface WriteResult {
  object: KubeObject;
  created: boolean;
  /** `Warning` header texts (unknown fields pruned under fieldValidation=Warn). */
  warnings: string[];
}

export interface DeleteOptions {
  propagationPolicy?: string;
  orphanDependents?: boolean;
  gracePeriodSeconds?: number;
  preconditions?: { uid?: string; resourceVersion?: string };
  dryRun: boolean;
}

/** The manager name the emulator's own controllers (garbage collector, Deployment status) write as. */
const CONTROLLER_MANAGER = 'kube-controller-manager';

const GENERATE_NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function groupResource(def: ResourceDef): GroupResource {
  return { group: def.group, plural: def.plural };
}

export function isNamespaceDef(def: ResourceDef): boolean {
  return def.group === '' && def.plural === 'namespaces';
}

export function isCrdDef(def: ResourceDef): boolean {
  return def.group === 'apiextensions.k8s.io' && def.plural === 'customresourcedefinitions';
}

function managerName(opts: WriteOptions): string {
  return opts.fieldManager ?? opts.userAgent?.split('/')[0] ?? 'unknown';
}

function scopeOf(def: ResourceDef, subresource: string): (path: FieldPath) => boolean {
  if (subresource === 'status' && def.statusKeepsMetadata) return (path) => path[0] === 'f:status' || (path[0] === 'f:metadata' && path[1] !== 'f:labels');
  if (subresource === 'status') return (path) => path[0] === 'f:status';
  if (subresource === 'scale') {
    const replicas = (def.scale?.specReplicasPath ?? '').replace(/^\./, '').split('.').map((part) => `f:${part}`);
    return (path) => path.length === replicas.length && path.every((token, i) => token === replicas[i]);
  }
  return def.statusSubresource ? (path) => path[0] !== 'f:status' : () => true;
}

export class Registry {
  private clusterIPs = 10;

  constructor(
    readonly resources: ResourceRegistry,
    readonly store: Store,
    private readonly onStorageRemoved: (storage: string) => void,
    /** A CRD's spec or accepted names changed: the API server replaces the storage of its resource. */
    private readonly onStorageReplaced: (storage: string) => void = () => undefined,
  ) {}

  private prepareContext(now: Date): PrepareContext {
    return {
      now,
      allocateClusterIP: () => {
        const n = this.clusterIPs++;
        return `10.96.${Math.floor(n / 256)}.${n % 256}`;
      },
    };
  }

  private fieldContext(def: ResourceDef, subresource: string, manager: string, now: Date): FieldManagerContext {
    return { manager, subresource, apiVersion: apiVersionOf(def), shape: def.shape, inScope: scopeOf(def, subresource), now: timestamp(now) };
  }

  find(def: ResourceDef, namespace: string | undefined, name: string): KubeObject | undefined {
    const stored = this.store.get(def.storage, def.namespaced ? namespace : undefined, name);
    return stored && toView(def, stored);
  }

  get(def: ResourceDef, namespace: string | undefined, name: string): KubeObject {
    const found = this.find(def, namespace, name);
    if (!found) throw errors.notFound(groupResource(def), name);
    return found;
  }

  list(def: ResourceDef, namespace: string | undefined, options: ListOptions): Record<string, unknown> {
    return listObjects(this.store, def, namespace, options);
  }

  /** The decoder's refusals of a POST or PUT body (admission.ts). */
  checkBody(def: ResourceDef, contentType: string, raw: string, parsed: unknown): void {
    checkRequestBody(def, contentType, raw, parsed);
  }

  create(def: ResourceDef, namespace: string | undefined, body: unknown, opts: WriteOptions, appliedFields?: ManagedFieldsEntry[]): WriteResult {
    const now = new Date();
    const obj = decodeObject(def, body, namespace);
    const meta = obj.metadata;
    if (meta.resourceVersion) throw new ApiError(500, 'InternalError', 'resourceVersion should not be set on objects to be created');
    if (!meta.name && meta.generateName) {
      const max = def.nameRule === 'subdomain' ? 253 : 63;
      meta.name = meta.generateName.slice(0, max - 5) + Array.from({ length: 5 }, () => GENERATE_NAME_ALPHABET[randomInt(GENERATE_NAME_ALPHABET.length)]).join('');
    }
    if (!meta.name) throw errors.invalid(def.kind, def.group, '', [fieldError.required('metadata.name', 'name or generateName is required')]);
    requireLiveNamespace(this.resources, this.store, def, namespace, meta.name);
    for (const field of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation', 'selfLink', 'managedFields']) delete meta[field];
    if (def.statusSubresource) delete obj.status;
    const warnings = applySchema(def, obj, opts.fieldValidation);
    if (def.goType) normalizeTimes(def.goType, obj as unknown as Json);
    def.prepare?.(obj, undefined, this.prepareContext(now));
    validateObject(def, obj, undefined);
    meta.uid = randomUUID();
    meta.creationTimestamp = timestamp(now);
    if (def.specChanged) meta.generation = 1;
    const managedFields = appliedFields ?? recordUpdate([], undefined, obj, this.fieldContext(def, '', managerName(opts), now));
    if (managedFields.length > 0) meta.managedFields = managedFields;
    if (this.find(def, namespace, meta.name)) throw errors.alreadyExists(groupResource(def), meta.name);
    if (opts.dryRun) return { object: obj, created: true, warnings };
    const stored = this.store.create(def.storage, toStorage(def, obj));
    if (isCrdDef(def)) for (const served of resourcesFromCrd(stored)) this.resources.add(served);
    return { object: toView(def, stored), created: true, warnings };
  }

  update(def: ResourceDef, namespace: string | undefined, name: string, body: unknown, opts: WriteOptions, subresource = ''): WriteResult {
    const obj = decodeObject(def, body, namespace, name);
    const existing = this.find(def, namespace, name);
    if (!existing) {
      if (!def.allowCreateOnUpdate || subresource) throw errors.notFound(groupResource(def), name);
      delete obj.metadata.resourceVersion;
      return this.create(def, namespace, obj, opts);
    }
    const resourceVersion = obj.metadata.resourceVersion;
    if (resourceVersion) {
      if (resourceVersion !== existing.metadata.resourceVersion) throw errors.staleResourceVersion(groupResource(def), name);
    } else if (!def.allowUnconditionalUpdate) {
      throw errors.invalid(def.kind, def.group, name, [{ field: 'metadata.resourceVersion', reason: 'FieldValueInvalid', message: 'Invalid value: 0x0: must be specified for an update' }]);
    }
    return this.commitUpdate(def, existing, obj, opts, subresource);
  }

  /** The update pipeline shared by PUT, PATCH, apply, /status and /scale writes. */
  private commitUpdate(def: ResourceDef, old: KubeObject, next: KubeObject, opts: WriteOptions, subresource: string, appliedFields?: ManagedFieldsEntry[]): WriteResult {
    const now = new Date();
    let obj = clone(next);
    for (const field of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation', 'resourceVersion', 'name', 'namespace'] as const) {
      if (old.metadata[field] === undefined) delete obj.metadata[field];
      else (obj.metadata as Record<string, unknown>)[field] = old.metadata[field];
    }
    delete obj.metadata.selfLink;
    if (subresource === 'status' && def.statusKeepsMetadata) {
      // v1.20's Deployment status strategy resets only spec and labels: annotations (the controller's revision) go through.
      obj = { ...obj, spec: clone(old.spec) as Json, metadata: { ...obj.metadata, labels: clone(old.metadata.labels) } };
      if (old.spec === undefined) delete obj.spec;
      if (old.metadata.labels === undefined) delete obj.metadata.labels;
    } else if (subresource === 'status') {
      // The status strategy keeps everything of the stored object but its status.
      const status = obj.status;
      obj = { ...clone(old), status };
      if (status === undefined) delete obj.status;
    } else if (def.statusSubresource) {
      if (old.status === undefined) delete obj.status;
      else obj.status = clone(old.status);
    }
    const warnings = applySchema(def, obj, opts.fieldValidation);
    if (def.goType) normalizeTimes(def.goType, obj as unknown as Json);
    def.prepare?.(obj, old, this.prepareContext(now));
    validateObject(def, obj, old);
    if (subresource !== 'status' && def.specChanged?.(old, obj)) obj.metadata.generation = (old.metadata.generation ?? 0) + 1;
    const managedFields = appliedFields ?? recordUpdate(old.metadata.managedFields ?? [], old, obj, this.fieldContext(def, subresource, managerName(opts), now));
    if (managedFields.length > 0) obj.metadata.managedFields = managedFields;
    else delete obj.metadata.managedFields;
    if (deepEqual(obj, old) || opts.dryRun) return { object: deepEqual(obj, old) ? old : obj, created: false, warnings };
    const stored = this.store.update(def.storage, toStorage(def, obj), toStorage(def, old));
    if (isCrdDef(def)) {
      for (const served of resourcesFromCrd(stored)) this.resources.add(served);
      const names = (o: KubeObject) => getPath(o, '.status.acceptedNames');
      if (!deepEqual(old.spec, stored.spec) || !deepEqual(names(old), names(stored))) this.onStorageReplaced(`${getPath(stored, '.spec.group') as string}/${getPath(stored, '.spec.names.plural') as string}`);
    }
    if (stored.metadata.deletionTimestamp && stored.metadata.deletionGracePeriodSeconds === 0 && !this.blocksDeletion(def, stored)) this.remove(def, stored);
    return { object: toView(def, stored), created: false, warnings };
  }

  private blocksDeletion(def: ResourceDef, obj: KubeObject): boolean {
    return (obj.metadata.finalizers?.length ?? 0) > 0 || (def.blocksDeletion?.(obj) ?? false);
  }

  private remove(def: ResourceDef, stored: KubeObject): KubeObject {
    const removed = this.store.remove(def.storage, stored);
    if (isCrdDef(def)) {
      const storage = `${getPath(removed, '.spec.group') as string}/${getPath(removed, '.spec.names.plural') as string}`;
      this.resources.removeStorage(storage);
      this.store.drop(storage);
      this.onStorageRemoved(storage);
    }
    return removed;
  }

  patch(def: ResourceDef, namespace: string | undefined, name: string, contentType: string, raw: string, opts: WriteOptions & { force?: boolean }, subresource = ''): WriteResult {
    if (contentType === CONTENT_TYPES.apply) return this.apply(def, namespace, name, raw, opts, subresource);
    if (opts.force !== undefined) throw errors.invalid('PatchOptions', 'meta.k8s.io', '', [fieldError.forbidden('force', 'may not be specified for non-apply patch')]);
    const accepted: string[] = [CONTENT_TYPES.jsonPatch, CONTENT_TYPES.mergePatch, ...(def.custom ? [] : [CONTENT_TYPES.strategicMergePatch]), CONTENT_TYPES.apply];
    if (!accepted.includes(contentType)) throw errors.unsupportedMediaType(contentType, accepted);
    const existing = this.get(def, namespace, name);
    let document: Json;
    try {
      document = JSON.parse(raw) as Json;
    } catch (err) {
      throw errors.badRequest(`error decoding patch: ${(err as Error).message}`);
    }
    const current = (subresource === 'scale' ? this.scaleOf(def, existing) : existing) as unknown as Json;
    let patched: Json | undefined;
    try {
      if (contentType === CONTENT_TYPES.mergePatch) patched = mergePatch(current, document);
      else if (contentType === CONTENT_TYPES.jsonPatch) patched = jsonPatch(current, document);
      else patched = strategicMergePatch(current, document, def.shape);
    } catch (err) {
      if (err instanceof PatchError) throw new ApiError(422, 'Invalid', err.message);
      throw err;
    }
    if (!isObject(patched)) throw errors.badRequest('the patch did not produce an object');
    if (subresource === 'scale') return this.writeScale(def, existing, patched, opts);
    checkPatched(def, contentType, document, patched);
    const obj = decodeObject(def, patched, namespace, name);
    // A resourceVersion the patch sets is a precondition, as for PUT.
    const resourceVersion = obj.metadata.resourceVersion;
    if (resourceVersion && resourceVersion !== existing.metadata.resourceVersion) throw errors.staleResourceVersion(groupResource(def), name);
    return this.commitUpdate(def, existing, obj, opts, subresource);
  }

  private apply(def: ResourceDef, namespace: string | undefined, name: string, raw: string, opts: WriteOptions & { force?: boolean }, subresource: string): WriteResult {
    if (!opts.fieldManager) throw errors.invalid('PatchOptions', 'meta.k8s.io', '', [fieldError.required('fieldManager', 'is required for apply patch')]);
    if (subresource === 'scale') throw errors.unsupportedMediaType(CONTENT_TYPES.apply, [CONTENT_TYPES.jsonPatch, CONTENT_TYPES.mergePatch]);
    let applied: unknown;
    try {
      applied = parseYaml(raw);
    } catch (err) {
      throw errors.badRequest(`error decoding YAML: ${(err as Error).message}`);
    }
    if (!isObject(applied) || !applied.apiVersion || !applied.kind) throw errors.badRequest('an applied configuration must be an object with apiVersion and kind');
    const config = decodeObject(def, applied, namespace, name);
    if (config.metadata.managedFields !== undefined) throw errors.badRequest('metadata.managedFields must be nil');
    const now = new Date();
    const request = { ...this.fieldContext(def, subresource, opts.fieldManager, now), force: opts.force === true };
    const existing = this.find(def, namespace, name);
    // The applied object is converted to the Go type; a Time that does not parse fails there (500, no reason).
    const converted = (object: KubeObject) => {
      const error = def.goType && conversionError(def.goType, object as unknown as Json);
      if (error) throw new ApiError(500, '', `failed to convert new object to proper version: unable to convert unstructured object to ${def.group}/${def.version}, Kind=${def.kind}: ${error}`);
      return object;
    };
    if (!existing) {
      if (subresource) throw errors.notFound(groupResource(def), name);
      const { object, managedFields } = serverSideApply(undefined, config, request);
      return this.create(def, namespace, converted(object), opts, managedFields);
    }
    if (config.metadata.resourceVersion && config.metadata.resourceVersion !== existing.metadata.resourceVersion) {
      throw errors.staleResourceVersion(groupResource(def), name);
    }
    const { object, managedFields } = serverSideApply(existing, config, request);
    return this.commitUpdate(def, existing, converted(object), opts, subresource, managedFields);
  }

  /** The object as its autoscaling/v1 Scale (resources.ts). */
  scaleOf(def: ResourceDef, obj: KubeObject): KubeObject {
    return scaleOf(def, obj);
  }

  updateScale(def: ResourceDef, namespace: string | undefined, name: string, body: unknown, opts: WriteOptions): KubeObject {
    return this.writeScale(def, this.get(def, namespace, name), body, opts).object;
  }

  private writeScale(def: ResourceDef, existing: KubeObject, body: unknown, opts: WriteOptions): WriteResult {
    const name = existing.metadata.name as string;
    const scale = isObject(body) ? body : {};
    const resourceVersion = getPath(scale, '.metadata.resourceVersion');
    if (resourceVersion && resourceVersion !== existing.metadata.resourceVersion) throw errors.staleResourceVersion(groupResource(def), name);
    const replicas = getPath(scale, '.spec.replicas');
    if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
      throw errors.invalid('Scale', 'autoscaling', name, [fieldError.invalid('spec.replicas', replicas ?? null, 'must be greater than or equal to 0')]);
    }
    const next = clone(existing);
    setPath(next as unknown as JsonObject, (def.scale as NonNullable<ResourceDef['scale']>).specReplicasPath, replicas);
    const result = this.commitUpdate(def, existing, next, opts, 'scale');
    return { ...result, object: this.scaleOf(def, result.object) };
  }

  delete(def: ResourceDef, namespace: string | undefined, name: string, options: DeleteOptions): Record<string, unknown> {
    const existing = this.get(def, namespace, name);
    const { uid, resourceVersion } = existing.metadata;
    const preconditions = options.preconditions ?? {};
    if (preconditions.uid && preconditions.uid !== uid) {
      throw errors.conflict(groupResource(def), name, `Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${uid}`);
    }
    if (preconditions.resourceVersion && preconditions.resourceVersion !== resourceVersion) {
      throw errors.conflict(groupResource(def), name, `Precondition failed: ResourceVersion in precondition: ${preconditions.resourceVersion}, ResourceVersion in object meta: ${resourceVersion}`);
    }
    const policy = options.propagationPolicy ?? (options.orphanDependents ? 'Orphan' : 'Background');
    if (!['Orphan', 'Background', 'Foreground'].includes(policy)) {
      throw errors.invalid('DeleteOptions', 'meta.k8s.io', '', [fieldError.notSupported('propagationPolicy', policy, ['Foreground', 'Background', 'Orphan'])]);
    }
    const deletedStatus = successStatus({ name, ...(def.group ? { group: def.group } : {}), kind: def.plural, uid });
    if (options.dryRun) return def.returnDeletedObject ? existing : deletedStatus;
    if (policy === 'Orphan') this.orphanDependents(existing);

    const next = clone(existing);
    const meta = next.metadata;
    const addFinalizer = (finalizer: string) => {
      if (!meta.finalizers?.includes(finalizer)) meta.finalizers = [...(meta.finalizers ?? []), finalizer];
    };
    if (policy === 'Foreground') addFinalizer('foregroundDeletion');
    if (isCrdDef(def)) addFinalizer(CRD_CLEANUP_FINALIZER);
    if (isNamespaceDef(def)) next.status = { ...(isObject(next.status) ? next.status : {}), phase: 'Terminating' };
    // Pods bound to a node terminate gracefully: the kubelet deletes them again with grace 0.
    const boundPod = def.group === '' && def.plural === 'pods' && Boolean(getPath(existing, '.spec.nodeName'));
    const grace = boundPod ? (options.gracePeriodSeconds ?? (getPath(existing, '.spec.terminationGracePeriodSeconds') as number | undefined) ?? 30) : 0;

    const stored = this.store.get(def.storage, def.namespaced ? namespace : undefined, name) as KubeObject;
    if (!this.blocksDeletion(def, next) && grace === 0) {
      const removed = this.remove(def, stored);
      return def.returnDeletedObject ? toView(def, removed) : deletedStatus;
    }
    if (!meta.deletionTimestamp || grace < (meta.deletionGracePeriodSeconds ?? 0)) {
      meta.deletionTimestamp = timestamp(new Date(Date.now() + grace * 1000));
      meta.deletionGracePeriodSeconds = grace;
    }
    if (deepEqual(next, existing)) return existing;
    return toView(def, this.store.update(def.storage, toStorage(def, next), stored));
  }

  deleteCollection(def: ResourceDef, namespace: string | undefined, listOptions: ListOptions, options: DeleteOptions): Record<string, unknown> {
    const list = this.list(def, namespace, listOptions);
    const items = list.items as KubeObject[];
    for (const item of items) this.delete(def, item.metadata.namespace, item.metadata.name as string, options);
    return { ...list, metadata: {} };
  }

  /** Removes references to `owner` from its dependents, as the garbage collector does for propagationPolicy=Orphan. */
  private orphanDependents(owner: KubeObject): void {
    for (const def of this.resources.storages()) {
      for (const stored of this.store.list(def.storage)) {
        const refs = stored.metadata.ownerReferences ?? [];
        if (!refs.some((ref) => ref.uid === owner.metadata.uid)) continue;
        const dependent = toView(def, stored);
        const next = clone(dependent);
        next.metadata.ownerReferences = refs.filter((ref) => ref.uid !== owner.metadata.uid);
        if (next.metadata.ownerReferences.length === 0) delete next.metadata.ownerReferences;
        this.commitUpdate(def, dependent, next, { fieldManager: CONTROLLER_MANAGER, dryRun: false }, '');
      }
    }
  }

  /** Updates made by the emulator's controllers (the same pipeline, under their manager name). */
  systemUpdate(def: ResourceDef, current: KubeObject, next: KubeObject, subresource = ''): KubeObject {
    return this.commitUpdate(def, current, next, { fieldManager: CONTROLLER_MANAGER, dryRun: false }, subresource).object;
  }

  /** The namespace controller's /finalize: clears spec.finalizers, which removes a namespace being deleted. */
  finalizeNamespace(def: ResourceDef, namespace: KubeObject): void {
    const stored = this.store.get(def.storage, undefined, namespace.metadata.name as string);
    if (!stored) return;
    const next = clone(stored);
    next.spec = { ...(isObject(next.spec) ? next.spec : {}), finalizers: [] };
    const updated = this.store.update(def.storage, next, stored);
    if (updated.metadata.deletionTimestamp && !this.blocksDeletion(def, updated)) this.remove(def, updated);
  }
}
