/**
 * One token request: an HTTPS POST of a form (RFC 6749 4.4, 5.1, 5.2), its answer turned into a
 * token or into a SmarthostAuthFailure that names the reason. node:https rather than fetch:
 * it takes the private CA of delivery.tlsPolicy.caFile without another library.
 */
import http from 'node:http';
import https from 'node:https';
import { SmarthostAuthFailure, tokenErrorReason } from '../smarthost-auth.js';
import type { TokenRequest } from './grants.js';
import type { IssuedToken } from './token-source.js';

const MAX_ANSWER_BYTES = 1024 * 1024;

export interface TokenEndpointOptions {
  timeoutMs: number;
  /** Trusted CAs (PEM); omitted: Node's default store. */
  ca?: string[];
}

export async function requestToken(req: TokenRequest, opts: TokenEndpointOptions): Promise<IssuedToken> {
  const url = new URL(req.url);
  const where = `${url.origin}${url.pathname}`;
  let answer: { status: number; body: string };
  try {
    answer = await post(url, new URLSearchParams(req.form).toString(), opts);
  } catch (err) {
    throw new SmarthostAuthFailure('token_endpoint_unreachable', `token endpoint ${where}: ${(err as Error).message}`);
  }
  let json: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(answer.body);
    if (parsed && typeof parsed === 'object') json = parsed as Record<string, unknown>;
  } catch {
    // Not JSON: a proxy's error page, a load balancer's 502.
  }
  if (answer.status === 200 && json && typeof json.access_token === 'string' && json.access_token) {
    const expiresIn = Number(json.expires_in ?? 3600);
    return { accessToken: json.access_token, expiresIn: Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : 3600 };
  }
  const reason = answer.status === 200 ? 'token_endpoint_unreachable' : tokenErrorReason(answer.status, json);
  const said = json && typeof json.error === 'string' ? `${json.error}${typeof json.error_description === 'string' ? `: ${firstLine(json.error_description)}` : ''}` : answer.status === 200 ? 'no access_token in its answer' : `not an OAuth 2.0 error: ${firstLine(answer.body).slice(0, 120)}`;
  throw new SmarthostAuthFailure(reason, `token endpoint ${where} answered ${answer.status} (${said})`);
}

/** Entra ID's descriptions run to several lines (trace and correlation IDs): the first says what is wrong. */
function firstLine(text: string): string {
  return text.split(/\r?\n/)[0]!.trim();
}

function post(url: URL, body: string, opts: TokenEndpointOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = (url.protocol === 'https:' ? https : http).request(
      url,
      {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'content-length': Buffer.byteLength(body) },
        ...(url.protocol === 'https:' && { ca: opts.ca, minVersion: 'TLSv1.2' as const }),
        timeout: opts.timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) request.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${opts.timeoutMs} ms`)));
    request.on('error', (err: NodeJS.ErrnoException) => reject(new Error(err.code && !err.message.includes(err.code) ? `${err.code} ${err.message}` : err.message)));
    request.end(body);
  });
}
