/** The config's durations and sizes, written as numbers or with units (`90s`, `25MiB`): shared by every section's schema. */
import { z } from 'zod';

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds, given as a number of seconds or a string such as `90s`, `5m`, `1h`, `5d`. */
export const duration = z.union([z.number().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(value);
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration: write a number of seconds or e.g. 90s, 5m, 1h, 5d` });
    return z.NEVER;
  }
  return Number(m[1]) * UNITS[m[2]!]!;
});

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3 };

/** Bytes, given as a number or a string such as `25MiB`, `100MB`, `512KiB`. */
export const byteSize = z.union([z.number().int().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size: write bytes or e.g. 512KiB, 25MiB, 1GiB` });
    return z.NEVER;
  }
  return Math.round(Number(m[1]) * unit);
});
