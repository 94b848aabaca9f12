/**
 * The three non-apply PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and an
 * approximation of strategic merge patch: merge patch, except that lists the shape marks
 * associative merge item by item on their patchMergeKey (containers, ports, env, volumes,
 * volumeMounts, conditions, ownerReferences...), sets (finalizers) take the union, and the
 * directives `$patch: delete|replace`, `$deleteFromPrimitiveList/<field>` and `$retainKeys` work.
 * `$setElementOrder` is accepted and ignored (order is not modelled).
 */
import { clone, deepEqual, isObject, type Json, type JsonObject } from './json.js';
import type { FieldShape } from './shapes.js';

/** A patch that cannot be applied to this object; the API server answers 422. */
export class PatchError extends Error {}

export function mergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const result: JsonObject = isObject(target) ? clone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

function parsePointer(pointer: Json | undefined): string[] {
  if (typeof pointer !== 'string' || (pointer !== '' && !pointer.startsWith('/'))) {
    throw new PatchError(`invalid JSON pointer: ${JSON.stringify(pointer)}`);
  }
  return pointer === '' ? [] : pointer.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function arrayIndex(container: Json[], token: string, forInsert: boolean): number {
  if (forInsert && token === '-') return container.length;
  const index = /^(0|[1-9]\d*)$/.test(token) ? Number(token) : NaN;
  if (!(index >= 0 && index <= container.length - (forInsert ? 0 : 1))) throw new PatchError(`index out of range: ${token}`);
  return index;
}

function resolve(doc: Json, tokens: string[]): Json {
  let current: Json | undefined = doc;
  for (const token of tokens) {
    if (Array.isArray(current)) current = current[arrayIndex(current, token, false)];
    else if (isObject(current) && Object.hasOwn(current, token)) current = current[token];
    else throw new PatchError(`path /${tokens.join('/')} does not exist`);
  }
  return current as Json;
}

function parentOf(doc: Json, tokens: string[]): { parent: Json; last: string } {
  if (tokens.length === 0) throw new PatchError('the root of the document cannot be the target here');
  return { parent: resolve(doc, tokens.slice(0, -1)), last: tokens[tokens.length - 1] as string };
}

function addAt(doc: Json, tokens: string[], value: Json): Json {
  if (tokens.length === 0) return value;
  const { parent, last } = parentOf(doc, tokens);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, value);
  else if (isObject(parent)) parent[last] = value;
  else throw new PatchError(`cannot add to a scalar at /${tokens.join('/')}`);
  return doc;
}

function removeAt(doc: Json, tokens: string[]): Json {
  resolve(doc, tokens);
  const { parent, last } = parentOf(doc, tokens);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, false), 1);
  else delete (parent as JsonObject)[last];
  return doc;
}

export function jsonPatch(doc: Json, operations: Json): Json {
  if (!Array.isArray(operations)) throw new PatchError('a JSON patch must be an array of operations');
  let result = clone(doc);
  for (const operation of operations) {
    if (!isObject(operation)) throw new PatchError('a JSON patch operation must be an object');
    const path = parsePointer(operation.path);
    switch (operation.op) {
      case 'add':
        result = addAt(result, path, clone(operation.value ?? null));
        break;
      case 'remove':
        result = removeAt(result, path);
        break;
      case 'replace':
        resolve(result, path);
        result = addAt(path.length ? removeAt(result, path) : result, path, clone(operation.value ?? null));
        break;
      case 'move': {
        const from = parsePointer(operation.from);
        const value = resolve(result, from);
        result = addAt(removeAt(result, from), path, value);
        break;
      }
      case 'copy':
        result = addAt(result, path, clone(resolve(result, parsePointer(operation.from))));
        break;
      case 'test':
        if (!deepEqual(resolve(result, path), operation.value)) throw new PatchError(`testing value /${path.join('/')} failed`);
        break;
      default:
        throw new PatchError(`unexpected JSON patch operation ${JSON.stringify(operation.op)}`);
    }
  }
  return result;
}

const DELETE_FROM = '$deleteFromPrimitiveList/';

/** Returns undefined where the patch says `$patch: delete` for the whole value. */
export function strategicMergePatch(target: Json | undefined, patch: Json, shape: FieldShape): Json | undefined {
  if (!isObject(patch)) return clone(patch);
  if (patch.$patch === 'delete') return undefined;
  const { $patch: directive, $retainKeys: retainKeys, ...fields } = patch;
  const result: JsonObject = isObject(target) && directive !== 'replace' ? clone(target) : {};
  for (const [key, value] of Object.entries(fields)) {
    if (key.startsWith('$setElementOrder/')) continue;
    if (key.startsWith(DELETE_FROM)) {
      const field = key.slice(DELETE_FROM.length);
      const current = result[field];
      if (Array.isArray(current) && Array.isArray(value)) result[field] = current.filter((item) => !value.some((v) => deepEqual(v, item)));
      continue;
    }
    if (value === null) {
      delete result[key];
      continue;
    }
    const child = shape.field(key);
    let merged: Json | undefined;
    if (Array.isArray(value) && child.kind === 'listMap') merged = mergeKeyedList(result[key], value, child);
    else if (Array.isArray(value) && child.kind === 'listSet') merged = mergeSet(result[key], value);
    else if (isObject(value) && child.kind !== 'atomic') merged = strategicMergePatch(result[key], value, child);
    else merged = clone(value);
    if (merged === undefined) delete result[key];
    else result[key] = merged;
  }
  if (Array.isArray(retainKeys)) {
    for (const key of Object.keys(result)) if (!retainKeys.includes(key)) delete result[key];
  }
  return result;
}

function mergeSet(current: Json | undefined, additions: Json[]): Json[] {
  const result = Array.isArray(current) ? clone(current) : [];
  for (const item of additions) if (!result.some((existing) => deepEqual(existing, item))) result.push(clone(item));
  return result;
}

function mergeKeyedList(current: Json | undefined, items: Json[], shape: FieldShape): Json[] {
  const mergeKey = shape.mergeKey ?? shape.keys?.[0] ?? 'name';
  if (items.some((item) => isObject(item) && item.$patch === 'replace')) {
    return items.filter((item) => !(isObject(item) && item.$patch === 'replace')).map((item) => clone(item));
  }
  const result = Array.isArray(current) ? clone(current) : [];
  for (const item of items) {
    if (!isObject(item)) {
      result.push(clone(item));
      continue;
    }
    const index = result.findIndex((existing) => isObject(existing) && deepEqual(existing[mergeKey], item[mergeKey]));
    if (item.$patch === 'delete') {
      if (index >= 0) result.splice(index, 1);
      continue;
    }
    const merged = strategicMergePatch(index >= 0 ? result[index] : undefined, item, shape.item()) as Json;
    if (index >= 0) result[index] = merged;
    else result.push(merged);
  }
  return result;
}
