/**
 * Regular expressions as kube-apiserver compiles and matches CRD `pattern`s: Go's regexp package
 * (RE2 syntax, linear-time matching, no lookaround or backreferences). re2js is a port of it
 * whose error messages are Go's; the one place it goes beyond the Go 1.19 the v1.20 API server
 * is built with is `(?<name>...)` (Go 1.22), which Go 1.19 refuses like any other `(?<`.
 */
import { RE2JS } from 're2js';

export type Compiled = { regexp: RE2JS; error?: undefined } | { regexp?: undefined; error: string };

const cache = new Map<string, Compiled>();

/** Offsets of `(?<` that open a group (outside character classes and escapes). */
function groupLookbehindOrName(pattern: string): number[] {
  const found: number[] = [];
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      if (pattern[i + 1] === 'Q') {
        const end = pattern.indexOf('\\E', i + 2);
        i = end < 0 ? pattern.length : end + 1;
      } else {
        i++;
      }
    } else if (inClass) {
      if (pattern.startsWith('[:', i)) {
        const end = pattern.indexOf(':]', i + 2);
        if (end >= 0) {
          i = end + 1;
          continue;
        }
      }
      if (c === ']') inClass = false;
    } else if (c === '[') {
      inClass = true;
      // `[]...]` and `[^]...]`: a leading `]` is a literal.
      if (pattern[i + 1] === '^') i++;
      if (pattern[i + 1] === ']') i++;
    } else if (c === '(' && pattern.startsWith('(?<', i)) {
      found.push(i);
    }
  }
  return found;
}

/** Compiles `pattern` as Go 1.19's regexp.Compile does: the regexp, or Go's error text. */
export function compileGoRegexp(pattern: string): Compiled {
  const cached = cache.get(pattern);
  if (cached) return cached;
  // Go 1.19 reads `(?<` as an unknown flag: hand re2js a construct it refuses the same way at
  // the same place, and put the `<` back into the message.
  const offsets = groupLookbehindOrName(pattern);
  let rewritten = pattern;
  for (const at of offsets) rewritten = `${rewritten.slice(0, at + 2)}&${rewritten.slice(at + 3)}`;
  let result: Compiled;
  try {
    result = { regexp: RE2JS.compile(rewritten) };
  } catch (err) {
    const message = (err as Error).message;
    result = { error: offsets.length ? message.replace('`(?&`', '`(?<`') : message };
  }
  cache.set(pattern, result);
  return result;
}

/** Go's regexp.MatchString: true when the pattern matches anywhere in `value`. */
export function goRegexpMatches(compiled: RE2JS, value: string): boolean {
  return compiled.test(value);
}
