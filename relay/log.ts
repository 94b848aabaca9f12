import pino, { type Logger } from 'pino';

/** JSON lines on stdout, one per event; `event` names what happened (received, delivered, ...). */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino({ level, base: { component: 'relay' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
