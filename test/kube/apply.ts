/**
 * Field ownership (metadata.managedFields, FieldsV1) and server-side apply.
 *
 * Ownership is tracked per leaf: a scalar, an atomic list or map, an empty map, plus each item of
 * an associative list or set (`k:{"name":"relay"}`, `v:"x"`), as structured-merge-diff does. An
 * apply merges the applied configuration into the live object, removes what the same manager
 * applied last time and no longer applies (unless another manager owns it or something under it),
 * and fails with 409 Conflict when it would change a field another manager owns, unless forced,
 * which takes the field over. Any other write (create, update, patch) gives its manager the
 * fields it changed and takes them from everyone else, as an `Update` entry.
 *
 * Not modelled: version conversion of field sets, `.` members for maps written by updates,
 * managedFields sent by clients (the stored ones are always kept), and SMD's ordering rules for
 * merged list items (new items go last).
 */
import { clone, deepEqual, isObject, type Json, type JsonObject, type KubeObject, type ManagedFieldsEntry } from './json.js';
import { effectiveKind, itemKey, type FieldShape } from './shapes.js';
import { ApiError } from './status.js';

export type FieldPath = readonly string[];

export class FieldSet {
  private readonly members = new Map<string, FieldPath>();

  constructor(paths: Iterable<FieldPath> = []) {
    for (const path of paths) this.members.set(JSON.stringify(path), path);
  }

  static fromFieldsV1(fields: JsonObject): FieldSet {
    const set = new FieldSet();
    const visit = (node: JsonObject, prefix: string[]) => {
      for (const [token, child] of Object.entries(node)) {
        if (token === '.') set.add(prefix);
        else if (isObject(child) && Object.keys(child).length > 0) visit(child, [...prefix, token]);
        else set.add([...prefix, token]);
      }
    };
    visit(fields, []);
    return set;
  }

  toFieldsV1(): JsonObject {
    const root: JsonObject = {};
    const sorted = this.paths().sort((a, b) => a.length - b.length);
    for (const path of sorted) {
      let node = root;
      for (const token of path) {
        if (!isObject(node[token])) node[token] = {};
        node = node[token] as JsonObject;
      }
    }
    // A member that also has members below it is written as `".": {}` beside them.
    for (const path of sorted) {
      let node: JsonObject = root;
      for (const token of path) node = node[token] as JsonObject;
      if (Object.keys(node).some((k) => k !== '.')) node['.'] = {};
    }
    return root;
  }

  add(path: FieldPath): void {
    this.members.set(JSON.stringify(path), path);
  }

  has(path: FieldPath): boolean {
    return this.members.has(JSON.stringify(path));
  }

  get size(): number {
    return this.members.size;
  }

  paths(): FieldPath[] {
    return [...this.members.values()];
  }

  union(other: FieldSet): FieldSet {
    return new FieldSet([...this.paths(), ...other.paths()]);
  }

  minus(other: FieldSet): FieldSet {
    return new FieldSet(this.paths().filter((path) => !other.has(path)));
  }

  intersect(other: FieldSet): FieldSet {
    return new FieldSet(this.paths().filter((path) => other.has(path)));
  }

  equals(other: FieldSet): boolean {
    return this.size === other.size && this.paths().every((path) => other.has(path));
  }

  /** Whether `path` or anything beneath it is a member. */
  coversAnyUnder(path: FieldPath): boolean {
    return this.paths().some((member) => member.length >= path.length && path.every((token, i) => member[i] === token));
  }
}

/** Fields the server sets or that identify the object: never owned by anyone. */
const UNOWNED_METADATA = new Set(['name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds']);

function isOwnable(path: FieldPath): boolean {
  const [first, second] = path;
  if (first === 'f:apiVersion' || first === 'f:kind') return false;
  return !(first === 'f:metadata' && (second === undefined || UNOWNED_METADATA.has(second.slice(2))));
}

const ITEM = Object.freeze({ item: true });

/** Every ownable path in an object with its value (list items map to a presence marker). */
function leaves(value: Json | undefined, shape: FieldShape, inScope: (path: FieldPath) => boolean): Map<string, { path: FieldPath; value: unknown }> {
  const found = new Map<string, { path: FieldPath; value: unknown }>();
  const record = (path: string[], leafValue: unknown) => {
    if (isOwnable(path) && inScope(path)) found.set(JSON.stringify(path), { path, value: leafValue });
  };
  const walk = (node: Json, nodeShape: FieldShape, prefix: string[]) => {
    const kind = effectiveKind(nodeShape, node);
    if (kind === 'map') {
      const entries = Object.entries(node as JsonObject);
      if (entries.length === 0 && prefix.length > 0) record(prefix, node);
      for (const [key, child] of entries) walk(child, nodeShape.field(key), [...prefix, `f:${key}`]);
    } else if ((kind === 'listMap' || kind === 'listSet') && (node as Json[]).length > 0) {
      for (const item of node as Json[]) {
        if (kind === 'listSet') {
          record([...prefix, `v:${JSON.stringify(item)}`], ITEM);
          continue;
        }
        const itemPath = [...prefix, `k:${JSON.stringify(itemKey(nodeShape, item))}`];
        record(itemPath, ITEM);
        if (isObject(item)) for (const [key, child] of Object.entries(item)) walk(child, nodeShape.item().field(key), [...itemPath, `f:${key}`]);
      }
    } else {
      record(prefix, node);
    }
  };
  if (value !== undefined) walk(value, shape, []);
  return found;
}

function fieldSetOf(value: Json, shape: FieldShape, inScope: (path: FieldPath) => boolean): FieldSet {
  return new FieldSet([...leaves(value, shape, inScope).values()].map((leaf) => leaf.path));
}

/** Paths added, removed or changed between two versions of an object. */
function changedPaths(before: Json | undefined, after: Json, shape: FieldShape, inScope: (path: FieldPath) => boolean): FieldSet {
  const old = leaves(before, shape, inScope);
  const next = leaves(after, shape, inScope);
  const changed = new FieldSet();
  for (const [key, leaf] of next) {
    const previous = old.get(key);
    if (!previous || !deepEqual(previous.value, leaf.value)) changed.add(leaf.path);
  }
  for (const [key, leaf] of old) if (!next.has(key)) changed.add(leaf.path);
  return changed;
}

export interface FieldManagerContext {
  manager: string;
  subresource: string;
  apiVersion: string;
  shape: FieldShape;
  /** Which paths this request can touch: the main resource excludes status where status is a subresource, and /status has only status. */
  inScope: (path: FieldPath) => boolean;
  now: string;
}

function isEntryOf(entry: ManagedFieldsEntry, ctx: FieldManagerContext, operation: 'Apply' | 'Update'): boolean {
  return entry.manager === ctx.manager && entry.operation === operation && (entry.subresource ?? '') === ctx.subresource;
}

function newEntry(ctx: FieldManagerContext, operation: 'Apply' | 'Update', fields: FieldSet, time: string): ManagedFieldsEntry {
  return {
    manager: ctx.manager,
    operation,
    apiVersion: ctx.apiVersion,
    time,
    fieldsType: 'FieldsV1',
    fieldsV1: fields.toFieldsV1(),
    ...(ctx.subresource ? { subresource: ctx.subresource } : {}),
  };
}

/**
 * The manager of a non-apply write takes the fields it changed; other managers lose them. An
 * unchanged object keeps its managedFields exactly, so a no-op write stays a no-op.
 */
export function recordUpdate(entries: ManagedFieldsEntry[], before: KubeObject | undefined, after: KubeObject, ctx: FieldManagerContext): ManagedFieldsEntry[] {
  const changed = changedPaths(before as unknown as Json, after as unknown as Json, ctx.shape, ctx.inScope);
  if (changed.size === 0) return entries;
  const present = fieldSetOf(after as unknown as Json, ctx.shape, ctx.inScope);
  const result: ManagedFieldsEntry[] = [];
  let mine = new FieldSet();
  let minePosition = -1;
  for (const entry of entries) {
    const fields = FieldSet.fromFieldsV1(entry.fieldsV1);
    if (isEntryOf(entry, ctx, 'Update')) {
      mine = fields;
      minePosition = result.length;
      continue;
    }
    const remaining = fields.minus(changed);
    if (remaining.size > 0) result.push(remaining.size === fields.size ? entry : { ...entry, fieldsV1: remaining.toFieldsV1() });
  }
  const owned = mine.minus(changed).union(changed.intersect(present));
  if (owned.size > 0) result.splice(minePosition >= 0 ? minePosition : result.length, 0, newEntry(ctx, 'Update', owned, ctx.now));
  return result;
}

function mergeApplied(live: Json | undefined, applied: Json, shape: FieldShape): Json {
  const kind = effectiveKind(shape, applied);
  if (kind === 'map' && isObject(live)) {
    const result = clone(live);
    for (const [key, value] of Object.entries(applied as JsonObject)) {
      if (value === null) delete result[key];
      else result[key] = mergeApplied(result[key], value, shape.field(key));
    }
    return result;
  }
  if (kind === 'listMap' && Array.isArray(live)) {
    const result = clone(live);
    for (const item of applied as Json[]) {
      const key = itemKey(shape, item);
      const index = result.findIndex((existing) => deepEqual(itemKey(shape, existing), key));
      if (index >= 0) result[index] = mergeApplied(result[index], item, shape.item());
      else result.push(clone(item));
    }
    return result;
  }
  if (kind === 'listSet' && Array.isArray(live)) {
    const result = clone(live);
    for (const item of applied as Json[]) if (!result.some((existing) => deepEqual(existing, item))) result.push(clone(item));
    return result;
  }
  return clone(applied);
}

/** Removes one owned path from an object, and any map or list that removal leaves empty. */
function removePath(root: JsonObject, path: FieldPath, shape: FieldShape): void {
  const trail: { container: JsonObject | Json[]; at: string | number }[] = [];
  let node: Json = root;
  let nodeShape = shape;
  for (const token of path) {
    const body = token.slice(2);
    let at: string | number;
    if (token.startsWith('f:')) {
      if (!isObject(node) || !Object.hasOwn(node, body)) return;
      at = body;
      nodeShape = nodeShape.field(body);
    } else {
      if (!Array.isArray(node)) return;
      const wanted = JSON.parse(body) as Json;
      const listShape = nodeShape;
      at = node.findIndex((item) => (token.startsWith('k:') ? deepEqual(itemKey(listShape, item), wanted) : deepEqual(item, wanted)));
      if (at < 0) return;
      nodeShape = nodeShape.item();
    }
    trail.push({ container: node, at });
    node = (node as Record<string | number, Json>)[at] as Json;
  }
  for (let i = trail.length - 1; i >= 0; i--) {
    const { container, at } = trail[i] as { container: JsonObject | Json[]; at: string | number };
    if (Array.isArray(container)) container.splice(at as number, 1);
    else delete container[at as string];
    const emptied = Array.isArray(container) ? container.length === 0 : Object.keys(container).length === 0;
    if (!emptied || i === 0 || (i === 1 && trail[0]?.at === 'metadata')) return;
  }
}

function describeManager(entry: ManagedFieldsEntry): string {
  let text = JSON.stringify(entry.manager);
  if (entry.subresource) text += ` with subresource ${JSON.stringify(entry.subresource)}`;
  if (entry.operation === 'Update') text += ` using ${entry.apiVersion}${entry.time ? ` at ${entry.time}` : ''}`;
  return text;
}

/** SMD's path notation: `.spec.containers[name="relay"].image`. */
function describePath(path: FieldPath): string {
  return path
    .map((token) => {
      const body = token.slice(2);
      if (token.startsWith('f:')) return `.${body}`;
      if (token.startsWith('v:')) return `[=${body}]`;
      const key = JSON.parse(body) as Record<string, Json>;
      return `[${Object.entries(key).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}]`;
    })
    .join('');
}

function conflictError(conflicts: { entry: ManagedFieldsEntry; path: FieldPath }[]): ApiError {
  const causes = conflicts.map(({ entry, path }) => ({ reason: 'FieldManagerConflict', message: `conflict with ${describeManager(entry)}`, field: describePath(path) }));
  let message: string;
  if (conflicts.length === 1) {
    const [{ entry, path }] = conflicts as [{ entry: ManagedFieldsEntry; path: FieldPath }];
    message = `Apply failed with 1 conflict: conflict with ${describeManager(entry)}: ${describePath(path)}`;
  } else {
    const byManager = new Map<string, string[]>();
    for (const { entry, path } of conflicts) {
      const who = describeManager(entry);
      byManager.set(who, [...(byManager.get(who) ?? []), describePath(path)]);
    }
    const lines = [...byManager.keys()].sort().flatMap((who) => [`conflicts with ${who}:`, ...(byManager.get(who) ?? []).map((p) => `- ${p}`)]);
    message = `Apply failed with ${conflicts.length} conflicts: ${lines.join('\n')}`;
  }
  return new ApiError(409, 'Conflict', message, { causes });
}

export interface ApplyRequest extends FieldManagerContext {
  force: boolean;
}

/** Server-side apply of `applied` onto `live` (undefined: the apply creates the object). */
export function serverSideApply(live: KubeObject | undefined, applied: KubeObject, request: ApplyRequest): { object: KubeObject; managedFields: ManagedFieldsEntry[] } {
  const appliedSet = fieldSetOf(applied as unknown as Json, request.shape, request.inScope);
  const merged = mergeApplied(live as unknown as Json, applied as unknown as Json, request.shape) as JsonObject;
  const entries = (live?.metadata.managedFields ?? []).map((entry) => ({
    entry,
    fields: FieldSet.fromFieldsV1(entry.fieldsV1),
    mine: isEntryOf(entry, request, 'Apply'),
  }));
  const previous = entries.find((e) => e.mine)?.fields ?? new FieldSet();
  const ownedByOthers = entries.filter((e) => !e.mine).reduce((all, e) => all.union(e.fields), new FieldSet());
  for (const path of previous.minus(appliedSet).paths()) {
    if (!ownedByOthers.coversAnyUnder(path)) removePath(merged, path, request.shape);
  }
  const changed = changedPaths(live as unknown as Json, merged, request.shape, request.inScope);
  const conflicts = entries
    .filter((e) => !e.mine)
    .flatMap(({ entry, fields }) => fields.intersect(changed).paths().map((path) => ({ entry, path })));
  if (conflicts.length > 0 && !request.force) throw conflictError(conflicts);

  const managedFields: ManagedFieldsEntry[] = [];
  let placed = false;
  const mineEntry = () => {
    const unchanged = previous.equals(appliedSet) && changed.size === 0;
    const old = entries.find((e) => e.mine)?.entry;
    return newEntry(request, 'Apply', appliedSet, unchanged && old ? old.time : request.now);
  };
  for (const { entry, fields, mine } of entries) {
    if (mine) {
      if (appliedSet.size > 0) managedFields.push(mineEntry());
      placed = true;
      continue;
    }
    const remaining = fields.minus(changed);
    if (remaining.size > 0) managedFields.push(remaining.size === fields.size ? entry : { ...entry, fieldsV1: remaining.toFieldsV1() });
  }
  if (!placed && appliedSet.size > 0) managedFields.push(mineEntry());
  return { object: merged as unknown as KubeObject, managedFields };
}
