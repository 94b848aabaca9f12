/**
 * The reasons a smarthost authentication fails, as the docs give them: docs/providers.md
 * ("which error means what") and docs/runbooks.md (MailfleetSmarthostAuthFailing) each have one
 * table row per reason of relay/delivery/smarthost-auth.ts, with its meaning and advice word for
 * word, so a reason added, renamed or reworded in the code fails here until the docs follow.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SMARTHOST_AUTH_REASONS } from '../relay/delivery/smarthost-auth.js';

const root = path.resolve(import.meta.dirname, '..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

/** The rows of the Markdown table under a heading (up to the next heading), by their `reason` cell. */
function reasonRows(markdown: string, heading: string): Map<string, string[]> {
  const start = markdown.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`no heading ${heading}`);
  const rest = markdown.slice(start + heading.length + 2);
  const section = rest.slice(0, rest.search(/\n#{1,6} /) >= 0 ? rest.search(/\n#{1,6} /) : undefined);
  const rows = new Map<string, string[]>();
  for (const line of section.split('\n')) {
    if (!line.startsWith('|')) continue;
    const cells = line.slice(1, -1).split(' | ').map((c) => c.trim());
    const reason = cells.map((c) => /^`(\w+)`$/.exec(c)?.[1]).find((r) => r !== undefined && r !== 'reason');
    if (reason) rows.set(reason, cells);
  }
  return rows;
}

describe('the smarthost authentication reasons in the docs are those of the relay', () => {
  it.each([
    { file: 'docs/providers.md', heading: '## Which error means what' },
    { file: 'docs/runbooks.md', heading: '## MailfleetSmarthostAuthFailing' },
  ])('$file, $heading: a row per reason, with its meaning and advice', ({ file, heading }) => {
    const rows = reasonRows(read(file), heading);
    expect([...rows.keys()].sort()).toEqual(Object.keys(SMARTHOST_AUTH_REASONS).sort());
    for (const [reason, { means, todo }] of Object.entries(SMARTHOST_AUTH_REASONS)) {
      const cells = rows.get(reason)!;
      expect(cells.slice(-2), `${file}: ${reason}`).toEqual([means, todo]);
    }
  });
});
