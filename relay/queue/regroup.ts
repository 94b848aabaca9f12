/**
 * A new route names destinations differently (a smarthost instead of recipient domains):
 * waiting units are regrouped under the new route's destinations, keeping their timing. Pure.
 */
import type { Unit } from './scheduler.js';

/**
 * Per message and new destination: its recipients, the earliest due time, the most attempts.
 * Also how many units each message has now, less how many it had (for its open-unit count).
 */
export function regroup(waiting: readonly Unit[], destinationOf: (recipient: string) => string): { units: Unit[]; unitsAdded: Map<string, number> } {
  const merged = new Map<string, Unit>();
  const unitsAdded = new Map<string, number>();
  const add = (messageId: string, n: number) => unitsAdded.set(messageId, (unitsAdded.get(messageId) ?? 0) + n);
  for (const unit of waiting) {
    add(unit.messageId, -1);
    for (const r of unit.recipients) {
      const destination = destinationOf(r);
      const id = `${unit.messageId}/${destination}`;
      const into = merged.get(id);
      if (into) {
        into.recipients.push(r);
        into.dueAt = Math.min(into.dueAt, unit.dueAt);
        into.attempts = Math.max(into.attempts, unit.attempts);
      } else {
        merged.set(id, { ...unit, id, destination, recipients: [r] });
        add(unit.messageId, 1);
      }
    }
  }
  return { units: [...merged.values()], unitsAdded };
}
