/** Config objects that refuse keys they do not know, and name the key a typo most likely meant. */
import { z } from 'zod';

/**
 * An object that refuses keys it does not know: a misspelled key (`limits.maxRecipents`) was
 * silently ignored, and its default quietly used. The error names the nearest known key.
 * (spfSchema and dmarcSchema stay open: the CRDs share them, and a structural schema cannot
 * say additionalProperties: false; the relay's config takes strict copies.)
 */
export function strict<T extends z.core.$ZodLooseShape>(shape: T) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? unknownKeys(issue.keys, known) : undefined),
  });
}

function unknownKeys(keys: readonly string[], known: readonly string[]): string {
  const named = keys.map((k) => {
    const near = nearest(k, known);
    return near ? `${k} (did you mean ${near}?)` : k;
  });
  return keys.length === 1 ? `unknown key${named[0]!.slice(keys[0]!.length)}` : `unknown keys: ${named.join(', ')}`;
}

/** The known key a typo most likely meant: KEY's file form, the same letters ignoring case, or at most 2 edits away. */
export function nearest(key: string, known: readonly string[]): string | undefined {
  // A secret written inline (`clientSecret: ...`) where only a file is taken (`clientSecretFile`).
  if (known.includes(`${key}File`)) return `${key}File`;
  let best: string | undefined;
  let bestDistance = Math.min(3, Math.ceil(key.length / 3));
  for (const k of known) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}
