import pino, { type Logger } from 'pino';

/**
 * JSON lines on stdout, one per event; `event` names what happened (received, delivered, ...).
 * Written asynchronously by default: under load writes batch instead of blocking the event
 * loop once a line (pino flushes what is left when the process exits). `sync`: each line
 * written before the call returns (the queue worker, which the main thread terminates at
 * shutdown, when an asynchronous write still waiting would be lost with it).
 */
export function createLogger(level: string, opts: { sync?: boolean } = {}): Logger {
  return pino({ level, base: { component: 'relay' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: opts.sync ?? false }));
}
