/**
 * DKIM key rotation as a pure state machine, driven by the clock and by what DNS serves:
 *
 *   (none) --create--> active                    the first keys sign at once: without them
 *                                                mail would leave unsigned anyway
 *   active --period passed--> + next             a new key is made and its record published
 *   next --DNS serves it, TTL passed--> active   signing switches; the old key becomes
 *   active --------------------------> retiring  retiring, still published through the overlap
 *   retiring --overlap passed--> (gone)          its record and key are removed
 *
 * A key's material is never replaced: a selector names one key for its whole life, so a
 * record that DNS serves always matches the key that signs. New keys take new selectors.
 */
import type { DkimAlgorithm } from '../../relay/dkim-keys.js';
import { duration } from '../../relay/config.js';
import type { DkimKeyStatus, SenderDomainSpec } from '../api/v1alpha1.js';

export interface RotationEvent {
  reason: 'KeyCreated' | 'RotationStarted' | 'RecordServed' | 'SigningSwitched' | 'KeyRetired';
  message: string;
}

export interface RotationPlan {
  /** The key list after this step (what the Secret's annotation and the status will say). */
  keys: DkimKeyStatus[];
  /** Keys to generate now (their selectors are already in `keys`). */
  create: { selector: string; algorithm: DkimAlgorithm }[];
  /** Selectors whose key material leaves the Secret. */
  remove: string[];
  events: RotationEvent[];
  /** Keys waiting for DNS, for the condition's message. */
  waitingForDns: string[];
  /** When the next step is due on the clock alone (the controller requeues for it). */
  nextStepAt?: Date;
}

export interface RotationInput {
  spec: SenderDomainSpec;
  keys: readonly DkimKeyStatus[];
  /** Whether DNS serves this selector's record as it should, at the last check. */
  served: (selector: string) => boolean;
  now: Date;
  /** Seconds to wait after DNS first serves a record (its TTL: resolvers may cache the old answer that long). */
  propagationSeconds: number;
  /** Selectors used before (status): a key lost with its Secret is replaced under a new selector, never an old one. */
  usedSelectors?: readonly string[];
}

const SUFFIX: Record<DkimAlgorithm, string> = { 'rsa-sha256': 'rsa', 'ed25519-sha256': 'ed' };

export function wantedAlgorithms(spec: SenderDomainSpec): DkimAlgorithm[] {
  return spec.dkim.keyType === 'both' ? ['rsa-sha256', 'ed25519-sha256'] : spec.dkim.keyType === 'rsa-2048' ? ['rsa-sha256'] : ['ed25519-sha256'];
}

const seconds = (d: string) => duration.parse(d);
const at = (base: string | undefined, plusSeconds: number) => (base ? new Date(Date.parse(base) + plusSeconds * 1000) : undefined);

/** One step of the state machine; apply its result and call again when something changed. */
export function planRotation(input: RotationInput): RotationPlan {
  const { spec, now } = input;
  const iso = now.toISOString();
  const keys = input.keys.map((k) => ({ ...k }));
  const create: RotationPlan['create'] = [];
  const events: RotationEvent[] = [];
  const waitingForDns: string[] = [];
  const wanted = wantedAlgorithms(spec);
  const period = spec.dkim.rotation.period ? seconds(spec.dkim.rotation.period) : undefined;
  const overlap = seconds(spec.dkim.rotation.overlap);
  const due: Date[] = [];

  // One generation number per rotation, shared by its keys: mailfleet-3-rsa and mailfleet-3-ed.
  let generation = Math.max(0, ...[...keys.map((k) => k.selector), ...(input.usedSelectors ?? [])].map((s) => Number(/-(\d+)-(rsa|ed)$/.exec(s)?.[1] ?? 0)));
  let nextGeneration: number | undefined;
  const newSelector = (algorithm: DkimAlgorithm) => {
    nextGeneration ??= ++generation;
    return `${spec.dkim.selectorPrefix}-${nextGeneration}-${SUFFIX[algorithm]}`;
  };

  const retire = (key: DkimKeyStatus) => {
    key.state = 'retiring';
    key.retireAt = new Date(now.getTime() + overlap * 1000).toISOString();
  };

  for (const algorithm of wanted) {
    const active = keys.find((k) => k.algorithm === algorithm && k.state === 'active');
    const next = keys.find((k) => k.algorithm === algorithm && k.state === 'next');
    if (!active && !next) {
      const selector = newSelector(algorithm);
      keys.push({ selector, algorithm, state: 'active', createdAt: iso, activatedAt: iso });
      create.push({ selector, algorithm });
      events.push({ reason: 'KeyCreated', message: `DKIM key ${selector} (${algorithm}) created and signing; publish its record` });
      if (period !== undefined) due.push(at(iso, period)!);
      continue;
    }
    if (next) {
      if (!input.served(next.selector)) {
        waitingForDns.push(next.selector);
        continue;
      }
      if (!next.servedAt) {
        next.servedAt = iso;
        events.push({ reason: 'RecordServed', message: `DNS serves the record of ${next.selector}; signing switches after ${input.propagationSeconds} s (its TTL)` });
      }
      const switchAt = at(next.servedAt, input.propagationSeconds)!;
      if (now < switchAt) {
        due.push(switchAt);
        continue;
      }
      if (active) retire(active);
      next.state = 'active';
      next.activatedAt = iso;
      if (period !== undefined) due.push(at(iso, period)!);
      events.push({ reason: 'SigningSwitched', message: `signing with ${next.selector}${active ? `; ${active.selector} stays published until ${active.retireAt}` : ''}` });
      continue;
    }
    if (active && period !== undefined) {
      const rotateAt = at(active.activatedAt ?? active.createdAt, period)!;
      if (now >= rotateAt) {
        const selector = newSelector(algorithm);
        keys.push({ selector, algorithm, state: 'next', createdAt: iso });
        create.push({ selector, algorithm });
        waitingForDns.push(selector);
        events.push({ reason: 'RotationStarted', message: `DKIM key ${selector} (${algorithm}) created to replace ${active.selector}; it signs once DNS serves its record` });
      } else due.push(rotateAt);
    }
  }

  // Algorithms no longer wanted (keyType changed) retire like a rotated key.
  for (const key of keys) if (!wanted.includes(key.algorithm) && key.state !== 'retiring') retire(key);

  const remove: string[] = [];
  for (const key of keys.filter((k) => k.state === 'retiring')) {
    const retireAt = new Date(key.retireAt!);
    if (now >= retireAt) {
      remove.push(key.selector);
      events.push({ reason: 'KeyRetired', message: `DKIM key ${key.selector} retired: remove its record` });
    } else due.push(retireAt);
  }
  const kept = keys.filter((k) => !remove.includes(k.selector));
  const nextStepAt = due.length ? new Date(Math.min(...due.map((d) => d.getTime()))) : undefined;
  return { keys: kept, create, remove, events, waitingForDns, ...(nextStepAt ? { nextStepAt } : {}) };
}
