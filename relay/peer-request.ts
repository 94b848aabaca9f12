/**
 * What the endpoints a fleet's relays call on each other share (the handoff of mail and of
 * events, the suppression list; relay/http.ts's admin endpoint too): the bearer token checked
 * in constant time, and a JSON body read only once its declared size fits, checked whole by
 * a zod schema.
 */
import crypto from 'node:crypto';
import type http from 'node:http';
import type { z } from 'zod';

const digest = (s: string) => crypto.createHash('sha256').update(s).digest();

/** Whether the request carries `Authorization: Bearer TOKEN`; compared as digests, in constant time whatever the lengths. */
export function bearerMatches(req: http.IncomingMessage, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return !!m && crypto.timingSafeEqual(digest(m[1]!), digest(token));
}

/** The body as `schema` reads it, or the answer that refuses it (411, 413, 400 naming the first fields at fault). */
export async function readJsonBody<T extends z.ZodType>(req: http.IncomingMessage, schema: T, maxBytes: number, what: string): Promise<{ data: z.output<T> } | { code: number; body: string }> {
  const declared = Number(req.headers['content-length']);
  if (req.headers['content-length'] === undefined || !Number.isSafeInteger(declared)) return { code: 411, body: 'a Content-Length is needed\n' };
  if (declared > maxBytes) return { code: 413, body: `more than ${maxBytes} bytes of ${what} in one request\n` };
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
  try {
    const r = schema.safeParse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
    if (!r.success) return { code: 400, body: `bad ${what}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).slice(0, 3).join('; ')}\n` };
    return { data: r.data };
  } catch (err) {
    return { code: 400, body: `bad ${what}: not JSON: ${(err as Error).message}\n` };
  }
}
