import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONDITIONS, REASONS, conditionReference } from './reasons.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

describe('conditions and reasons', () => {
  it('docs/conditions.md is generated from operator/controllers/reasons.ts (run `npm run docs` after a change)', () => {
    expect(fs.readFileSync(path.join(ROOT, 'docs/conditions.md'), 'utf8')).toBe(conditionReference());
  });

  it('every reason belongs to a condition, and every reason the controllers set is in the list', () => {
    const listed = new Set(Object.values(CONDITIONS).flatMap((c) => Object.values(c).flatMap((x) => x.reasons)));
    expect(Object.keys(REASONS).filter((r) => !listed.has(r as keyof typeof REASONS))).toEqual([]);
    const controllers = ['controllers/mailrelay.ts', 'controllers/senderdomain.ts', 'controllers/fleet-autoscaler.ts', 'policy/rollout.ts', 'policy/senderdomain-status.ts', 'policy/smarthost-auth.ts', 'policy/bulk-sender.ts'].map((f) => fs.readFileSync(path.join(ROOT, 'operator', f), 'utf8')).join('\n');
    const set = [...controllers.matchAll(/reason: (?:[^'\n]*\? )?'([A-Za-z]+)'/g)].map((m) => m[1]!);
    expect(set.length).toBeGreaterThan(10);
    expect(set.filter((r) => !(r in REASONS))).toEqual([]);
  });
});
