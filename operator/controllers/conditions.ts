/**
 * Conditions as Kubernetes users read them (metav1.Condition): a transition time that moves
 * only when the status does, and observedGeneration on each. Also the change test that keeps
 * the operator quiet: status is written only when something other than timestamps changed.
 */
import type { Condition } from '../api/v1alpha1.js';
import type { Reason } from './reasons.js';

/** Sets one condition; its reason must be one of operator/controllers/reasons.ts (users and alerts read them). */
export function setCondition(conditions: readonly Condition[] | undefined, next: Omit<Condition, 'lastTransitionTime' | 'reason'> & { reason: Reason }, now: Date): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === next.type);
  const before = i >= 0 ? list[i] : undefined;
  const condition: Condition = { ...next, lastTransitionTime: before && before.status === next.status ? before.lastTransitionTime : now.toISOString() };
  if (i >= 0) list[i] = condition;
  else list.push(condition);
  return list;
}

export function conditionOf(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/**
 * Whether two statuses differ in anything but the fields that only record when something was
 * seen. Key order does not count: the API server stores a custom resource's JSON with its keys
 * sorted, so what it returns never has the order the operator wrote.
 */
export function statusChanged(before: unknown, after: unknown, ignore: readonly string[] = []): boolean {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object')
      return Object.fromEntries(
        Object.entries(v)
          .filter(([k, x]) => !ignore.includes(k) && x !== undefined)
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([k, x]) => [k, strip(x)]),
      );
    return v;
  };
  return JSON.stringify(strip(before ?? {})) !== JSON.stringify(strip(after ?? {}));
}
