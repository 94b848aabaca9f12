/**
 * The machinery of the emulator-parity suite (emulator-parity.test.ts): an API server client over
 * HTTP(S) with watches (Target), the project's CRDs as v1.20 takes them, the normalisation of an
 * answer to what a client can branch on (status, object, masks for times and generated names), and
 * the differences between two normalised answers.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import YAML from 'yaml';
import { ROOT } from './harness.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Obj = { [key: string]: Json };

export interface Answer {
  code: number;
  body: Obj;
}

export interface WatchEvent {
  type: string;
  object: Obj;
}

/** One API server over HTTP(S): plain requests, and watches read until they end or time runs out. */
export class Target {
  constructor(
    readonly name: 'real' | 'emulator',
    private readonly base: string,
    private readonly options: https.RequestOptions = {},
  ) {}

  private open(method: string, p: string, body: unknown, contentType: string, onResponse: (res: http.IncomingMessage) => void): http.ClientRequest {
    const url = new URL(p, this.base);
    const headers: Record<string, string> = { ...((this.options.headers as Record<string, string>) ?? {}), 'User-Agent': 'parity/1.0' };
    if (body !== undefined) headers['Content-Type'] = contentType;
    const req = (url.protocol === 'https:' ? https : http).request(url, { ...this.options, method, headers }, onResponse);
    if (body !== undefined) req.write(typeof body === 'string' ? body : JSON.stringify(body));
    req.end();
    return req;
  }

  request(method: string, p: string, body?: unknown, contentType = 'application/json'): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = this.open(method, p, body, contentType, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => {
          try {
            resolve({ code: res.statusCode ?? 0, body: JSON.parse(text) as Obj });
          } catch {
            resolve({ code: res.statusCode ?? 0, body: { text } });
          }
        });
      });
      req.on('error', reject);
    });
  }

  /**
   * A watch: `connected` once the server answered (the watch is registered), `result` with its
   * events once it ends (timeoutSeconds), `stopWhen` says enough, or `ms` pass.
   */
  watch(p: string, ms: number, stopWhen: (events: WatchEvent[]) => boolean = () => false): { connected: Promise<void>; result: Promise<{ code: number; events: WatchEvent[] }> } {
    let connect: () => void = () => undefined;
    const connected = new Promise<void>((resolve) => (connect = resolve));
    const result = new Promise<{ code: number; events: WatchEvent[] }>((resolve, reject) => {
      const events: WatchEvent[] = [];
      let code = 0;
      let req: http.ClientRequest | undefined = undefined;
      const done = () => {
        clearTimeout(timer);
        req?.destroy();
        connect();
        resolve({ code, events });
      };
      const timer = setTimeout(done, ms);
      req = this.open('GET', p, undefined, '', (res) => {
        code = res.statusCode ?? 0;
        connect();
        let buffer = '';
        res.on('data', (c: Buffer) => {
          buffer += c.toString();
          for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
            events.push(JSON.parse(buffer.slice(0, i)) as WatchEvent);
            buffer = buffer.slice(i + 1);
            if (stopWhen(events)) done();
          }
        });
        res.on('end', done);
      });
      req.on('error', (err) => (events.length ? done() : reject(err)));
    });
    return { connected, result };
  }
}

/** Removes `x-kubernetes-validations` (CEL): v1.20 has none, as harness.ts's chartFor strips them. */
function stripCel(node: unknown): void {
  if (Array.isArray(node)) node.forEach(stripCel);
  else if (node && typeof node === 'object') {
    delete (node as Obj)['x-kubernetes-validations'];
    Object.values(node).forEach(stripCel);
  }
}

export function projectCrds(): Obj[] {
  return fs
    .readdirSync(path.join(ROOT, 'crds'))
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => {
      const crd = YAML.parse(fs.readFileSync(path.join(ROOT, 'crds', f), 'utf8')) as Obj;
      stripCel(crd);
      return crd;
    });
}

/**
 * A Status: what a client can branch on. A custom resource's schema errors come in the order Go
 * iterates a map (random): causes, and the list the message makes of them, are sorted.
 */
export function status(answer: Answer): Obj {
  const { code, body } = answer;
  const details = (body.details ?? {}) as Obj;
  let causes = (details.causes ?? null) as Obj[] | null;
  let message = (body.message ?? null) as string | null;
  if (causes && causes.length > 1 && message) {
    const render = (list: Obj[]) => `[${list.map((c) => `${String(c.field)}: ${String(c.message)}`).join(', ')}]`;
    const sorted = [...causes].sort((a, b) => (`${String(a.field)} ${String(a.message)}` < `${String(b.field)} ${String(b.message)}` ? -1 : 1));
    if (message.endsWith(render(causes))) message = message.slice(0, -render(causes).length) + render(sorted);
    causes = sorted;
  }
  return {
    code,
    kind: body.kind ?? null,
    status: body.status ?? null,
    reason: body.reason ?? null,
    message,
    details: { name: details.name ?? null, group: details.group ?? null, kind: details.kind ?? null, causes },
  };
}

/** The fields of a returned object that clients read; uids, times and resourceVersion values left out. */
export function object(answer: Answer, pick: string[] = ['spec', 'status']): Obj {
  const { body } = answer;
  const meta = (body.metadata ?? {}) as Obj;
  return {
    code: answer.code,
    apiVersion: body.apiVersion ?? null,
    kind: body.kind ?? null,
    metadata: {
      name: meta.name ?? null,
      namespace: meta.namespace ?? null,
      labels: meta.labels ?? null,
      generation: meta.generation ?? null,
      finalizers: meta.finalizers ?? null,
      managers: ((meta.managedFields ?? []) as Obj[]).map((m) => `${String(m.manager)} ${String(m.operation)}`),
    },
    ...Object.fromEntries(pick.map((p) => [p, (body[p] ?? null) as Json])),
  };
}

export function withoutTimes(value: Json): Json {
  return JSON.parse(JSON.stringify(value, (k, v: unknown) => (k === 'lastUpdateTime' || k === 'lastTransitionTime' ? undefined : v))) as Json;
}

/** ReplicaSet names carry a hash of the pod template Go computes over its own structs: not comparable. */
export function maskReplicaSets(value: Json): Json {
  return JSON.parse(JSON.stringify(value).replace(/relay-[bcdfghjklmnpqrstvwxz2456789]{6,10}\b/g, 'relay-HASH')) as Json;
}

/** The 422 of a patch that does not decode names the whole patched object: it carries uids and times, so it is masked. */
export function maskPatchedObject(answer: Answer): Obj {
  const mask = (text: Json | undefined): Json => (typeof text === 'string' ? text.replace(/Invalid value: "\{.*?\}": /, 'Invalid value: "<the patched object>": ') : (text ?? null));
  const s = status(answer);
  const details = s.details as Obj;
  return { ...s, message: mask(s.message), details: { ...details, causes: ((details.causes ?? []) as Obj[]).map((c) => ({ ...c, message: mask(c.message ?? null) })) } };
}

/** Polls until `check` holds; false if it did not within `ms` (the case then reports what it sees). */
export const waitFor = async (check: () => Promise<boolean>, ms = 20_000): Promise<boolean> => {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
};

export interface Difference {
  path: string;
  real: Json | undefined;
  emulator: Json | undefined;
}

export function differences(real: Json | undefined, emulator: Json | undefined, at = ''): Difference[] {
  if (JSON.stringify(real) === JSON.stringify(emulator)) return [];
  const bothObjects = real && emulator && typeof real === 'object' && typeof emulator === 'object' && Array.isArray(real) === Array.isArray(emulator);
  if (!bothObjects || (Array.isArray(real) && (real as Json[]).length !== (emulator as Json[]).length)) return [{ path: at || '.', real, emulator }];
  // Answers with different status codes are one difference, not one per field.
  if (!Array.isArray(real) && (real as Obj).code !== (emulator as Obj).code) return [{ path: at || '.', real, emulator }];
  const keys = [...new Set([...Object.keys(real as Obj), ...Object.keys(emulator as Obj)])];
  return keys.flatMap((k) => differences((real as Obj)[k], (emulator as Obj)[k], `${at}.${k}`));
}
