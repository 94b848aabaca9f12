/**
 * The application's own header fields, read at intake and removed before the message is stored
 * (so never delivered, never signed): tags and metadata that every event of the message then
 * carries, as SendGrid's categories and custom args, Mailgun's X-Mailgun-Tag and
 * X-Mailgun-Variables, and SES's message tags do.
 *
 *     X-Mailfleet-Tags: newsletter, 2026-12
 *     X-Mailfleet-Metadata: {"campaign": "winter", "customer": "4711"}
 *
 * Pure. Bad values are refused at the end of DATA with what is wrong (550 5.6.0), never
 * dropped in silence: an application that sends them wants to know.
 */
import { MAX_METADATA_KEYS, MAX_METADATA_VALUE, MAX_TAG, MAX_TAGS } from '../envelope.js';

export const TAGS_FIELD = 'X-Mailfleet-Tags';
export const METADATA_FIELD = 'X-Mailfleet-Metadata';
const NAMES = [TAGS_FIELD.toLowerCase(), METADATA_FIELD.toLowerCase()];

/** Whether a lower-case field name is one of ours (headerFacts notes it, so most messages skip the rest). */
export function isAppField(name: string): boolean {
  return NAMES.includes(name);
}

export interface AppFields {
  /** The header section without our fields; byte for byte the same otherwise. */
  header: Buffer;
  tags?: string[];
  metadata?: Record<string, string>;
}

export type AppFieldsResult = { ok: true; fields: AppFields } | { ok: false; problem: string };

/** Removes our fields (with their folded lines) from a header section and reads their values. */
export function takeAppFields(header: Buffer): AppFieldsResult {
  const kept: Buffer[] = [];
  const values = new Map<string, string[]>();
  let pos = 0;
  while (pos < header.length) {
    let end = header.indexOf(10, pos);
    end = end < 0 ? header.length : end + 1;
    // Folded lines (starting with a space or a tab) belong to the field.
    while (end < header.length && (header[end] === 32 || header[end] === 9)) {
      const nl = header.indexOf(10, end);
      end = nl < 0 ? header.length : nl + 1;
    }
    const field = header.subarray(pos, end);
    const colon = field.indexOf(58);
    const name = colon > 0 ? field.subarray(0, colon).toString('latin1').trim().toLowerCase() : '';
    if (isAppField(name)) {
      const value = field.subarray(colon + 1).toString('utf8').replace(/\r?\n[ \t]*/g, ' ').trim();
      values.set(name, [...(values.get(name) ?? []), value]);
    } else kept.push(field);
    pos = end;
  }
  const fields: AppFields = { header: Buffer.concat(kept) };
  const tagValues = values.get(NAMES[0]!);
  if (tagValues) {
    const tags = tagValues.flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean);
    const problem = tagsProblem(tags);
    if (problem) return { ok: false, problem };
    fields.tags = [...new Set(tags)];
  }
  const metadataValues = values.get(NAMES[1]!);
  if (metadataValues) {
    if (metadataValues.length > 1) return { ok: false, problem: `${METADATA_FIELD} appears ${metadataValues.length} times; give one JSON object` };
    const r = parseMetadata(metadataValues[0]!);
    if (!r.ok) return r;
    fields.metadata = r.metadata;
  }
  return { ok: true, fields };
}

function tagsProblem(tags: string[]): string | undefined {
  if (new Set(tags).size > MAX_TAGS) return `${TAGS_FIELD} has ${new Set(tags).size} tags; at most ${MAX_TAGS} are taken`;
  // eslint-disable-next-line no-control-regex
  const bad = tags.find((t) => t.length > MAX_TAG || /[\u0000-\u001f\u007f]/.test(t));
  if (bad) return `${TAGS_FIELD}: a tag is longer than ${MAX_TAG} characters or holds control characters`;
  return undefined;
}

function parseMetadata(value: string): { ok: true; metadata: Record<string, string> } | { ok: false; problem: string } {
  const problem = `${METADATA_FIELD} must be one JSON object of at most ${MAX_METADATA_KEYS} keys (letters, digits, _ . -) with string, number or boolean values of at most ${MAX_METADATA_VALUE} characters`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    return { ok: false, problem: `${problem}; it is not JSON (${(err as Error).message})` };
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return { ok: false, problem };
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (entries.length > MAX_METADATA_KEYS) return { ok: false, problem: `${problem}; it has ${entries.length} keys` };
  const metadata: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(k)) return { ok: false, problem: `${problem}; the key ${JSON.stringify(k.slice(0, 64))} is not` };
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return { ok: false, problem: `${problem}; the value of ${k} is not` };
    const s = String(v);
    // eslint-disable-next-line no-control-regex
    if (s.length > MAX_METADATA_VALUE || /[\u0000-\u001f\u007f]/.test(s)) return { ok: false, problem: `${problem}; the value of ${k} is not` };
    metadata[k] = s;
  }
  return { ok: true, metadata };
}
