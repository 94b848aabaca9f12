import pino, { type Logger } from 'pino';

/**
 * JSON lines on stdout, one per event; `event` names what happened (received, delivered, ...).
 * Each line is written before the call returns, in one write(2) of its own, from either
 * thread: a line is never lost with a crashed or terminated thread, and lines from the two
 * threads never interleave (each is far below PIPE_BUF). Asynchronous writes cost more here:
 * every line went through libuv's thread pool and woke the event loop once more, ~9% of the
 * relay's CPU per message under `npm run bench:cpu` (docs/architecture.md, Logging). The cost
 * of the choice: a log reader that stops reading stalls the relay once its pipe is full, as a
 * stalled syslog stalls Postfix; accepted mail is on disk and is not lost. `component` says which
 * half wrote the line (relay or operator), for a log search across both.
 */
export function createLogger(level: string, opts: { component?: 'relay' | 'operator' } = {}): Logger {
  return pino({ level, base: { component: opts.component ?? 'relay' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }));
}
