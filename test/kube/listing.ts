/**
 * A list request: label and field selectors, and paging with limit and continue (the token holds
 * the list's resourceVersion and the last key served). Built-in kinds' items carry no kind or apiVersion.
 */
import type { JsonObject, KubeObject } from './json.js';
import { apiVersionOf, selectableFields, toView, type ResourceDef } from './resources.js';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector } from './selectors.js';
import { errors } from './status.js';
import type { Store } from './store.js';

export interface ListOptions {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continueToken?: string;
}

function decodeContinueToken(token: string): { rv: string; after: string } {
  try {
    return JSON.parse(Buffer.from(token, 'base64url').toString()) as { rv: string; after: string };
  } catch {
    throw errors.badRequest('continue key is not valid');
  }
}

export function listObjects(store: Store, def: ResourceDef, namespace: string | undefined, options: ListOptions): Record<string, unknown> {
  const labels = parseLabelSelector(options.labelSelector ?? '');
  const fields = parseFieldSelector(options.fieldSelector ?? '');
  for (const { field } of fields) {
    if (!(field in selectableFields(def, { metadata: {} }))) throw errors.badRequest(`field label not supported: ${field}`);
  }
  const token = options.continueToken ? decodeContinueToken(options.continueToken) : undefined;
  const keyOf = (obj: KubeObject) => `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
  const matching = store
    .list(def.storage, def.namespaced ? namespace : undefined)
    .map((stored) => toView(def, stored))
    .filter((obj) => matchesLabels(labels, obj.metadata.labels) && matchesFields(fields, selectableFields(def, obj)))
    .filter((obj) => !token || keyOf(obj) > token.after);
  const page = options.limit && options.limit > 0 ? matching.slice(0, options.limit) : matching;
  const resourceVersion = token?.rv ?? String(store.resourceVersion);
  const rest = matching.length - page.length;
  const last = page[page.length - 1];
  const metadata: JsonObject = { resourceVersion };
  if (rest > 0 && last) {
    metadata.continue = Buffer.from(JSON.stringify({ rv: resourceVersion, after: keyOf(last) })).toString('base64url');
    metadata.remainingItemCount = rest;
  }
  // Typed lists of built-in kinds carry no kind or apiVersion on their items; custom resource lists do.
  const items = def.custom ? page : page.map(({ apiVersion: _apiVersion, kind: _kind, ...item }) => item);
  return { apiVersion: apiVersionOf(def), kind: def.listKind, metadata, items };
}
