import pino, { type Logger } from 'pino';

/**
 * JSON lines on stdout, one per event; `event` names what happened (received, delivered, ...).
 * Written asynchronously: under load writes batch instead of blocking the event loop once a
 * line (pino flushes what is left when the process exits).
 */
export function createLogger(level: string, destination: pino.DestinationStream = pino.destination({ dest: 1, sync: false })): Logger {
  return pino({ level, base: { component: 'relay' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
