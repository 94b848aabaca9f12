/**
 * A request body decoded as kube-apiserver v1.20 decodes it into the Go types of gotypes.ts,
 * reduced to the one thing the emulator checks there: metav1.Time and metav1.MicroTime fields
 * must parse (gotime.ts). A body that fails is answered as the API server answers, down to the
 * error text json-iterator builds:
 *
 *   Lease in version "v1" cannot be handled as a Lease: v1.Lease.Spec: v1.LeaseSpec.RenewTime:
 *   unmarshalerDecoder: parsing time "...43.725Z" as "2006-01-02T15:04:05.000000Z07:00": cannot
 *   parse ".725Z" as ".000000", error found in #10 byte of ...|4:43.725Z"}}|..., bigger context ...|...|...
 *
 * json-iterator keeps decoding after the first error and every field decoded after it prefixes
 * its Go name (then each struct its type) until a value it cannot step over stops it; the rules
 * below are the ones measured against v1.20.2 (see README.md). Other decoding errors (a string
 * where Go has an integer...) are not checked.
 */
import { formatGoTime, parseGoTime, RFC3339, RFC3339_MICRO } from './gotime.js';
import type { GoType } from './gotypes.js';
import { isObject, type Json } from './json.js';

type JsonNode =
  | { kind: 'object'; entries: [string, JsonNode][]; start: number; end: number }
  | { kind: 'array'; items: JsonNode[]; start: number; end: number }
  | { kind: 'string'; value: string; start: number; end: number }
  | { kind: 'number'; raw: string; start: number; end: number }
  | { kind: 'bool' | 'null'; start: number; end: number };

/** A JSON document (already known to be valid) as nodes with byte offsets. */
function parseNodes(buf: Buffer): JsonNode {
  let pos = 0;
  const ws = () => {
    while (pos < buf.length && (buf[pos] === 0x20 || buf[pos] === 0x0a || buf[pos] === 0x0d || buf[pos] === 0x09)) pos++;
  };
  const stringEnd = (from: number) => {
    let i = from + 1;
    while (buf[i] !== 0x22) i += buf[i] === 0x5c ? 2 : 1;
    return i + 1;
  };
  const value = (): JsonNode => {
    ws();
    const start = pos;
    const c = buf[pos];
    if (c === 0x7b) {
      pos++;
      const entries: [string, JsonNode][] = [];
      ws();
      if (buf[pos] === 0x7d) pos++;
      else {
        for (;;) {
          ws();
          const keyEnd = stringEnd(pos);
          const key = JSON.parse(buf.subarray(pos, keyEnd).toString('utf8')) as string;
          pos = keyEnd;
          ws();
          pos++; // ':'
          entries.push([key, value()]);
          ws();
          if (buf[pos++] === 0x7d) break;
        }
      }
      return { kind: 'object', entries, start, end: pos };
    }
    if (c === 0x5b) {
      pos++;
      const items: JsonNode[] = [];
      ws();
      if (buf[pos] === 0x5d) pos++;
      else {
        for (;;) {
          items.push(value());
          ws();
          if (buf[pos++] === 0x5d) break;
        }
      }
      return { kind: 'array', items, start, end: pos };
    }
    if (c === 0x22) {
      pos = stringEnd(pos);
      return { kind: 'string', value: JSON.parse(buf.subarray(start, pos).toString('utf8')) as string, start, end: pos };
    }
    if (c === 0x74 || c === 0x66 || c === 0x6e) {
      pos += c === 0x66 ? 5 : 4;
      return { kind: c === 0x6e ? 'null' : 'bool', start, end: pos };
    }
    while (pos < buf.length && /[-+0-9.eE]/.test(String.fromCharCode(buf[pos] as number))) pos++;
    return { kind: 'number', raw: buf.subarray(start, pos).toString('latin1'), start, end: pos };
  };
  return value();
}

const nonEmpty = (node: JsonNode) => (node.kind === 'object' && node.entries.length > 0) || (node.kind === 'array' && node.items.length > 0);

/** Go's name for a JSON value's type in "json: cannot unmarshal X into Go value of type string". */
function jsonKind(kind: JsonNode['kind']): string {
  return kind === 'bool' ? 'bool' : kind;
}

function timeError(type: 'time' | 'microtime', node: JsonNode): string | undefined {
  if (node.kind === 'null') return undefined;
  if (node.kind !== 'string') return `json: cannot unmarshal ${jsonKind(node.kind)} into Go value of type string`;
  return parseGoTime(type === 'microtime' ? RFC3339_MICRO : RFC3339, node.value).error;
}

interface DecodeState {
  buf: Buffer;
  error?: string;
  /** json-iterator met a value it does not step over once an error is set: nothing more is decoded. */
  stopped: boolean;
}

function prefix(st: DecodeState, text: string): void {
  if (st.error !== undefined) st.error = text + st.error;
}

/** json-iterator's Iterator.ReportError: the message and the bytes around where it stopped. */
function report(st: DecodeState, head: number, message: string): void {
  const { buf } = st;
  const peekStart = Math.max(0, head - 10);
  const peek = buf.subarray(peekStart, Math.min(buf.length, head + 10)).toString('utf8');
  const context = buf.subarray(Math.max(0, head - 50), Math.min(buf.length, head + 50)).toString('utf8');
  st.error = `${message}, error found in #${head - peekStart} byte of ...|${peek}|..., bigger context ...|${context}|...`;
}

function decodeValue(node: JsonNode, type: GoType, st: DecodeState): void {
  switch (type.t) {
    case 'ptr':
      if (node.kind !== 'null') decodeValue(node, type.elem, st);
      return;
    case 'time':
    case 'microtime': {
      const error = timeError(type.t, node);
      if (error !== undefined) report(st, node.end, `unmarshalerDecoder: ${error}`);
      return;
    }
    case 'struct':
      if (node.kind === 'object' && type.fields) decodeStruct(node, type, st);
      return;
    case 'slice':
    case 'map': {
      const children = node.kind === 'array' ? node.items : node.kind === 'object' ? node.entries.map(([, v]) => v) : [];
      if ((type.t === 'slice') !== (node.kind === 'array')) return;
      for (const child of children) {
        if (st.stopped) break;
        if (st.error === undefined) decodeValue(child, type.elem, st);
        else afterError(child, type.elem, st);
      }
      if (type.t === 'slice') prefix(st, `${type.name}: `);
      return;
    }
    default:
      return;
  }
}

/** A value json-iterator decodes once an error is set: what it prefixes, and whether it stops there. */
function afterError(node: JsonNode, type: GoType, st: DecodeState): void {
  switch (type.t) {
    case 'ptr':
      if (node.kind !== 'null') st.stopped = true;
      return;
    case 'time':
    case 'microtime':
    case 'raw':
    case 'number':
      st.stopped = true;
      return;
    case 'struct':
      if (nonEmpty(node) && node.kind === 'object') {
        prefix(st, `${type.name}.`);
        st.stopped = true;
      }
      return;
    case 'slice':
      prefix(st, `${type.name}: `);
      if (nonEmpty(node)) st.stopped = true;
      return;
    default:
      if (nonEmpty(node) || node.kind === 'number') st.stopped = true;
  }
}

/** An unknown field json-iterator skips once an error is set: containers and numbers starting with 0 stop it. */
function skipStops(node: JsonNode): boolean {
  return nonEmpty(node) || (node.kind === 'number' && node.raw.startsWith('0'));
}

function decodeStruct(node: Extract<JsonNode, { kind: 'object' }>, type: Extract<GoType, { t: 'struct' }>, st: DecodeState): void {
  for (const [key, value] of node.entries) {
    if (st.stopped) break;
    const field = type.fields?.find((f) => f.json === key);
    if (!field) {
      if (st.error !== undefined && skipStops(value)) st.stopped = true;
      continue;
    }
    if (st.error === undefined) decodeValue(value, field.type, st);
    else afterError(value, field.type, st);
    prefix(st, `${field.go}: `);
    if (field.inline) prefix(st, `${field.inline}: `);
  }
  prefix(st, `${type.name}.`);
}

/** The decoding error of a JSON body (the text after "Kind in version ... cannot be handled as a Kind: "), if any. */
export function decodeError(type: GoType, json: string): string | undefined {
  const buf = Buffer.from(json, 'utf8');
  const st: DecodeState = { buf, stopped: false };
  decodeValue(parseNodes(buf), type, st);
  return st.error;
}

function toNode(value: Json | undefined): JsonNode {
  const at = { start: 0, end: 0 };
  if (value === null || value === undefined) return { kind: 'null', ...at };
  if (typeof value === 'string') return { kind: 'string', value, ...at };
  if (typeof value === 'number') return { kind: 'number', raw: String(value), ...at };
  if (typeof value === 'boolean') return { kind: 'bool', ...at };
  return Array.isArray(value) ? { kind: 'array', items: [], ...at } : { kind: 'object', entries: [], ...at };
}

/**
 * The first time field that does not parse when an object (a patched or applied one) is
 * converted to its Go type field by field (runtime.DefaultUnstructuredConverter, in Go field
 * order), as the bare error: `parsing time "..." as "...": cannot parse ...`.
 */
export function conversionError(type: GoType, value: Json | undefined): string | undefined {
  if (value === undefined || value === null) return undefined;
  switch (type.t) {
    case 'ptr':
      return conversionError(type.elem, value);
    case 'time':
    case 'microtime':
      return timeError(type.t, toNode(value));
    case 'struct':
      if (!isObject(value)) return undefined;
      for (const field of type.fields ?? []) {
        const error = conversionError(field.type, value[field.json]);
        if (error) return error;
      }
      return undefined;
    case 'slice':
    case 'map':
      for (const child of Array.isArray(value) ? value : isObject(value) ? Object.values(value) : []) {
        const error = conversionError(type.elem, child);
        if (error) return error;
      }
      return undefined;
    default:
      return undefined;
  }
}

/** Rewrites every Time and MicroTime of an object to the form the API server stores and serves (UTC, seconds or microseconds). */
export function normalizeTimes(type: GoType, value: Json | undefined): Json | undefined {
  if (value === undefined || value === null) return value;
  switch (type.t) {
    case 'ptr':
      return normalizeTimes(type.elem, value);
    case 'time':
    case 'microtime': {
      if (typeof value !== 'string') return value;
      const { time } = parseGoTime(type.t === 'microtime' ? RFC3339_MICRO : RFC3339, value);
      return time ? formatGoTime(time, type.t === 'microtime') : value;
    }
    case 'struct':
      if (isObject(value)) for (const field of type.fields ?? []) if (field.json in value) value[field.json] = normalizeTimes(field.type, value[field.json]) as Json;
      return value;
    case 'slice':
      if (Array.isArray(value)) value.forEach((child, i) => (value[i] = normalizeTimes(type.elem, child) as Json));
      return value;
    case 'map':
      if (isObject(value)) for (const key of Object.keys(value)) value[key] = normalizeTimes(type.elem, value[key]) as Json;
      return value;
    default:
      return value;
  }
}

/** Go's %v of a decoded JSON value (map[string]interface{} and friends), as in "Invalid value: \"map[spec:map[...]]\"". */
export function goValueString(value: Json | undefined): string {
  if (value === null || value === undefined) return '<nil>';
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    if (Number.isInteger(value)) return String(value);
    // %v of a float64: 'g' with the shortest digits, exponent form below 1e-4 and from 1e6.
    const [mantissa, exponent] = value.toExponential().split('e') as [string, string];
    const exp = Number(exponent);
    if (exp < -4 || exp >= 6) return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(goValueString).join(' ')}]`;
  return `map[${Object.keys(value)
    .sort()
    .map((k) => `${k}:${goValueString(value[k])}`)
    .join(' ')}]`;
}

/** The bytes Go's encoder writes for a string: JSON with <, >, &, U+2028 and U+2029 escaped. */
function goStringify(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Which nodes of a patched document a patch touched (`true`: all of it, an object: some children). */
export type Touched = true | { [key: string]: Touched };

/** The containers a JSON patch's operations reach into. */
export function touchedByJsonPatch(operations: Json): Touched {
  const root: { [key: string]: Touched } = {};
  for (const op of Array.isArray(operations) ? operations : []) {
    if (!isObject(op)) continue;
    for (const pointer of [op.path, op.from]) {
      if (typeof pointer !== 'string') continue;
      const tokens = pointer.split('/').slice(1, -1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
      let node = root;
      for (const token of tokens) {
        const next = node[token];
        node = next === undefined || next === true ? (node[token] = {}) : next;
      }
    }
  }
  return root;
}

/**
 * A patched object as the patch handler serialises it before decoding it: the containers the
 * patch reached into are re-encoded with sorted keys (Go maps), the rest keeps the stored
 * object's field order (Go struct order where gotypes.ts knows it).
 */
export function patchedJson(type: GoType | undefined, value: Json, touched: Json | Touched | undefined): string {
  const order = (v: Json, t: GoType | undefined, touch: Json | Touched | undefined): Json => {
    const elem = t?.t === 'ptr' ? t.elem : t;
    if (Array.isArray(v)) return v.map((item) => order(item, elem?.t === 'slice' ? elem.elem : undefined, undefined));
    if (!isObject(v)) return v;
    const fields = elem?.t === 'struct' ? (elem.fields ?? []) : [];
    const fieldType = (key: string) => (elem?.t === 'map' ? elem.elem : fields.find((f) => f.json === key)?.type);
    let keys = Object.keys(v);
    if (isObject(touch) || touch === true) keys = keys.sort();
    else if (fields.length) keys = [...fields.map((f) => f.json).filter((k) => k in v), ...keys.filter((k) => !fields.some((f) => f.json === k))];
    return Object.fromEntries(keys.map((k) => [k, order(v[k] as Json, fieldType(k), isObject(touch) ? (touch as Record<string, Json | Touched>)[k] : undefined)]));
  };
  return goStringify(order(value, type, touched));
}
