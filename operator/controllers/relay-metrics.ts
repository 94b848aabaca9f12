/**
 * What the autoscaler reads from a relay pod: its /metrics (the Prometheus text exposition,
 * format 0.0.4) reduced to the three signals. A pod whose /metrics does not answer, answers
 * with an error, or whose numbers cannot be trusted gives no signals: the autoscaler then
 * treats it as the HPA treats a pod without metrics.
 *
 * The parser is our own, not a library's: it reads one producer (the relay's prom-client), and
 * the npm parsers either throw away the whole scrape on one odd line or restructure it into
 * families with string values, which the three signals do not need (docs/architecture.md).
 */
import http from 'node:http';
import { SMARTHOST_AUTH_REASONS, type SmarthostAuthReason } from '../../relay/delivery/smarthost-auth.js';
import type { SmarthostAuthSample } from '../policy/smarthost-auth.js';

export interface RelaySignals {
  /** Messages due now (`queue_messages{state="ready"}`); deferred ones, waiting for a retry time or a throttling provider, are not. */
  ready: number;
  /** How long the oldest message due now has waited. */
  oldestReadySeconds: number;
  /** Open SMTP sessions over all listeners. */
  sessions: number;
  /** Every message the pod holds (ready, deferred, in flight): what a scale-down of it would have to hand over. */
  queued: number;
  /** Authenticating to the smarthost; absent from a relay that predates the metrics. */
  smarthostAuth?: SmarthostAuthSample;
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const QUEUE_MESSAGES = 'mailfleet_relay_queue_messages';
const OLDEST_READY = 'mailfleet_relay_queue_oldest_ready_seconds';
const SMTP_SESSIONS = 'mailfleet_relay_smtp_sessions';
const AUTH_FAILING = 'mailfleet_relay_smarthost_auth_failing';
const AUTH_FAILURES = 'mailfleet_relay_smarthost_auth_failures_total';
const AUTH_SUCCESSES = 'mailfleet_relay_smarthost_auth_successes_total';

/** A relay's exposition is tens of KiB; anything far larger is not one. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const ESCAPES: Record<string, string> = { n: '\n', '\\': '\\', '"': '"' };

function parseValue(token: string): number | undefined {
  const special: Record<string, number> = { nan: NaN, '+inf': Infinity, inf: Infinity, '-inf': -Infinity };
  const lower = token.toLowerCase();
  if (lower in special) return special[lower];
  const n = Number(token);
  return token === '' || Number.isNaN(n) ? undefined : n;
}

/** One sample line, or undefined when it is malformed. */
function parseLine(line: string): Sample | undefined {
  const name = NAME.exec(line)?.[0];
  if (!name) return undefined;
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      while (line[i] === ' ' || line[i] === ',') i++;
      if (line[i] === '}') break;
      const label = LABEL_NAME.exec(line.slice(i))?.[0];
      if (!label) return undefined;
      i += label.length;
      while (line[i] === ' ') i++;
      if (line[i] !== '=') return undefined;
      i++;
      while (line[i] === ' ') i++;
      if (line[i] !== '"') return undefined;
      i++;
      let value = '';
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\' && i + 1 < line.length) {
          const next = line[i + 1]!;
          value += ESCAPES[next] ?? '\\' + next;
          i += 2;
        } else value += line[i++];
      }
      if (line[i] !== '"') return undefined;
      i++;
      labels[label] = value;
    }
    i++;
  }
  // The value, then an optional timestamp (ignored).
  const [token] = line.slice(i).trim().split(/\s+/);
  const value = token === undefined ? undefined : parseValue(token);
  return value === undefined ? undefined : { name, labels, value };
}

/** The samples of an exposition; comments, HELP and TYPE lines and malformed lines are skipped. */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const sample = parseLine(line);
    if (sample) samples.push(sample);
  }
  return samples;
}

/**
 * The signals in a relay's exposition, summed over label sets (sessions are per listener) and
 * for the age the largest. Undefined when the queue gauges are absent (not a relay) or a value
 * is NaN or infinite: such a pod counts as one without metrics.
 */
export function relaySignals(text: string): RelaySignals | undefined {
  const samples = parseExposition(text);
  const ready = samples.filter((s) => s.name === QUEUE_MESSAGES && s.labels.state === 'ready');
  const oldest = samples.filter((s) => s.name === OLDEST_READY);
  // A listener's session gauge has no sample until its first session: none means 0.
  const sessions = samples.filter((s) => s.name === SMTP_SESSIONS);
  if (!ready.length || !oldest.length) return undefined;
  if (![...ready, ...oldest, ...sessions].every((s) => Number.isFinite(s.value))) return undefined;
  const sum = (list: Sample[]) => list.reduce((n, s) => n + s.value, 0);
  const queued = samples.filter((s) => s.name === QUEUE_MESSAGES && Number.isFinite(s.value));
  const smarthostAuth = smarthostAuthSample(samples);
  return { ready: sum(ready), oldestReadySeconds: Math.max(...oldest.map((s) => s.value)), sessions: sum(sessions), queued: sum(queued), ...(smarthostAuth ? { smarthostAuth } : {}) };
}

/**
 * The smarthost authentication state in a relay's samples: undefined when the successes counter
 * is absent (a relay from before these metrics). The failing reason is the one whose gauge is
 * 1; reasons this operator does not know are ignored (a newer relay's: the count still says it fails).
 */
export function smarthostAuthSample(samples: readonly Sample[]): SmarthostAuthSample | undefined {
  const successes = samples.find((s) => s.name === AUTH_SUCCESSES && Number.isFinite(s.value));
  if (!successes) return undefined;
  const failures = samples.filter((s) => s.name === AUTH_FAILURES && Number.isFinite(s.value)).reduce((n, s) => n + s.value, 0);
  const failing = samples.find((s) => s.name === AUTH_FAILING && s.value >= 1 && (s.labels.reason ?? '') in SMARTHOST_AUTH_REASONS)?.labels.reason as SmarthostAuthReason | undefined;
  return { successes: successes.value, failures, ...(failing ? { failing } : {}) };
}

/**
 * GETs a pod's /metrics and resolves its signals, or undefined when it does not answer
 * within timeoutMs (connecting and reading included), fails, answers other than 200, or
 * says nothing a relay would. Never rejects.
 */
export function scrapeSignals(url: string, timeoutMs: number): Promise<RelaySignals | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    let request: http.ClientRequest | undefined;
    let done = false;
    const finish = (signals: RelaySignals | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      request?.destroy();
      resolve(signals);
    };
    try {
      // A connection of its own (no agent): destroying it on a timeout leaves no pooled socket behind.
      request = http.get(url, { agent: false, headers: { accept: 'text/plain' } }, (response) => {
        if (response.statusCode !== 200) return finish(undefined);
        const chunks: Buffer[] = [];
        let size = 0;
        response.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) finish(undefined);
          else chunks.push(chunk);
        });
        response.on('end', () => finish(relaySignals(Buffer.concat(chunks).toString('utf8'))));
        response.on('error', () => finish(undefined));
      });
      request.on('error', () => finish(undefined));
    } catch {
      // http.get throws at once on a malformed URL.
      finish(undefined);
    }
  });
}
