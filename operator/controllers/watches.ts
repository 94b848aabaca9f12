/**
 * How a controller says what it watches: for each kind, which of its own keys a change of an
 * object of that kind requeues. Each controller declares its list beside its reconcile
 * (mailrelay.ts, senderdomain.ts): what a reconcile reads is what it must watch. The
 * operator runs one informer per kind for all of them.
 */
import type { AnyObject } from '../kube/client.js';

/** The label on every object the operator makes (so its informers watch only those). */
export const MANAGED = 'app.kubernetes.io/managed-by=mailfleet-operator';

export interface Watch {
  apiVersion: string;
  kind: string;
  labelSelector?: string;
  /** The keys (`namespace/name`) of the controller's objects to reconcile after this change. */
  requeue(key: string, object: AnyObject | undefined, previous: AnyObject | undefined, all: (namespace: string) => string[]): string[];
}

/** Labels, spec and the named status fields: what one controller reads of another's object. */
export function relevant(o: AnyObject | undefined, statusFields: string[]): string {
  const status = (o?.status ?? {}) as Record<string, unknown>;
  return JSON.stringify([o?.metadata.labels, o?.spec, statusFields.map((f) => status[f])]);
}

/** The object itself. */
export const self = (apiVersion: string, kind: string): Watch => ({ apiVersion, kind, requeue: (key) => [key] });

/** Objects the controller made, labelled MANAGED: a change (edited, deleted, a pod ready) goes to their owner of this kind. */
export const owned = (apiVersion: string, kind: string, ownerKind: string): Watch => ({
  apiVersion,
  kind,
  labelSelector: MANAGED,
  requeue: (key, o, previous) => {
    const owner = (((o ?? previous)?.metadata.ownerReferences ?? []) as { kind: string; name: string }[]).find((r) => r.kind === ownerKind)?.name;
    return owner ? [`${key.split('/')[0]}/${owner}`] : [];
  },
});

/** Every object of the controller's kind in the changed object's namespace, when `changed` says the change matters. */
export const namespaceWide = (apiVersion: string, kind: string, changed: (o: AnyObject | undefined, previous: AnyObject | undefined) => boolean): Watch => ({
  apiVersion,
  kind,
  requeue: (key, o, previous, all) => (changed(o, previous) ? all(key.split('/')[0]!) : []),
});

/** Labelled MANAGED: made by this operator (another tool's managed-by, such as Helm's, is not). */
export const madeByOperator = (o: AnyObject) => o.metadata.labels?.[MANAGED.split('=')[0]!] === MANAGED.split('=')[1];

/**
 * The Secret informer watches every Secret (a relay renders its webhooks' key ids from their
 * Secrets' key names): of those the operator did not make, it keeps the key names and not
 * the values, so users' passwords and TLS keys never sit in the operator's memory.
 */
export function withoutForeignValues(o: AnyObject): AnyObject {
  if (madeByOperator(o)) return o;
  const data = Object.fromEntries(Object.keys((o.data ?? {}) as Record<string, unknown>).map((k) => [k, '']));
  return { apiVersion: o.apiVersion, kind: o.kind, metadata: o.metadata, ...(o.type ? { type: o.type } : {}), data };
}
