import pino, { type Logger } from 'pino';

/**
 * JSON lines on stdout, one per event; `event` names what happened (received, delivered, ...).
 * Written asynchronously by default: under load writes batch instead of blocking the event
 * loop once a line (pino flushes what is left when the process exits). `sync`: each line
 * written before the call returns (the queue worker, which the main thread terminates at
 * shutdown, when an asynchronous write still waiting would be lost with it). `component` says
 * which half wrote the line (relay or operator), for a log search across both.
 */
export function createLogger(level: string, opts: { sync?: boolean; component?: 'relay' | 'operator' } = {}): Logger {
  return pino({ level, base: { component: opts.component ?? 'relay' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: opts.sync ?? false }));
}
