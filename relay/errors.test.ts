import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERRORS, ErrorCodes, errorReference } from './errors.js';

const ROOT = path.resolve(import.meta.dirname, '..');

/** The product's sources (not tests, not generated output). */
function sources(): { file: string; text: string }[] {
  return ['relay', 'cli', 'operator'].flatMap((dir) =>
    fs
      .readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
      .map((f) => ({ file: `${dir}/${f}`, text: fs.readFileSync(path.join(ROOT, dir, f), 'utf8') })),
  );
}

describe('error codes', () => {
  it('docs/errors.md is the reference generated from relay/errors.ts (run `npm run docs` after a change)', () => {
    expect(fs.readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8')).toBe(errorReference());
  });

  it('every MF_ code the sources name is defined in the one table, and every code in it is used', () => {
    const defined = new Set<string>(Object.values(ErrorCodes));
    const all = sources();
    const named = all.filter((s) => s.file !== 'relay/errors.ts').flatMap((s) => [...s.text.matchAll(/\bMF_[A-Z0-9_]+\b/g)].map((m) => `${m[0]} (${s.file})`));
    expect(named.filter((n) => !defined.has(n.split(' ')[0]!))).toEqual([]);
    const unused = Object.keys(ERRORS).filter((name) => !all.some((s) => s.file !== 'relay/errors.ts' && s.text.includes(`ErrorCodes.${name}`)));
    expect(unused).toEqual([]);
  });

  it('each code says what it means and what to do', () => {
    for (const e of Object.values(ERRORS)) {
      expect(e.means.length, e.code).toBeGreaterThan(20);
      expect(e.todo.length, e.code).toBeGreaterThan(10);
    }
  });
});
