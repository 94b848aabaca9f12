/**
 * What tests observe and steer about traffic: a log of every request with its Kubernetes verb
 * (get, list, watch, create, update, patch, delete, deletecollection) and resource, for counting
 * API calls per reconcile; and injected failures (500, 429 with Retry-After...) for the next
 * requests that match.
 */
import { ApiError } from './status.js';

export interface RequestRecord {
  method: string;
  path: string;
  query: string;
  /** The Kubernetes verb, or `get` for discovery and other non-resource paths. */
  verb: string;
  group?: string;
  version?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  contentType?: string;
  fieldManager?: string;
  code: number;
}

export interface RequestMatcher {
  method?: string;
  verb?: string;
  group?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** The URL path (without query): equal to a string, or matching a RegExp. */
  path?: string | RegExp;
  contentType?: string;
}

export interface InjectedFailure {
  code: number;
  reason?: string;
  message?: string;
  /** Sent as Retry-After and details.retryAfterSeconds (429 and 503 carry it on real clusters). */
  retryAfterSeconds?: number;
  /** How many matching requests fail; 1 by default. */
  times?: number;
}

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  409: 'Conflict',
  410: 'Expired',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

function matchesRequest(matcher: RequestMatcher, request: Omit<RequestRecord, 'code'>): boolean {
  const { path, ...fields } = matcher;
  if (path !== undefined && !(typeof path === 'string' ? request.path === path : path.test(request.path))) return false;
  return Object.entries(fields).every(([key, value]) => value === undefined || request[key as keyof typeof fields] === value);
}

export class RequestLog {
  readonly records: RequestRecord[] = [];
  private readonly failures: { matcher: RequestMatcher; failure: InjectedFailure; remaining: number }[] = [];

  count(matcher: RequestMatcher = {}): number {
    return this.records.filter((record) => matchesRequest(matcher, record)).length;
  }

  failNext(matcher: RequestMatcher, failure: number | InjectedFailure): void {
    const spec = typeof failure === 'number' ? { code: failure } : failure;
    this.failures.push({ matcher, failure: spec, remaining: spec.times ?? 1 });
  }

  /** The injected error for this request, if one is armed for it (consuming one use). */
  takeFailure(request: Omit<RequestRecord, 'code'>): ApiError | undefined {
    const armed = this.failures.find((f) => f.remaining > 0 && matchesRequest(f.matcher, request));
    if (!armed) return undefined;
    armed.remaining--;
    const { code, reason = REASONS[code] ?? 'Unknown', message = `injected failure (${code})`, retryAfterSeconds } = armed.failure;
    const retry = retryAfterSeconds !== undefined ? { retryAfterSeconds } : undefined;
    return new ApiError(code, reason, message, retry, retry ? { 'Retry-After': String(retryAfterSeconds) } : {});
  }
}
