/**
 * smtp-server with nothing behind it: accepts every message and drops it. `npm run bench`
 * offers it the same load as the relay, to show the ceiling the SMTP library itself sets on
 * this machine (the relay's intake is built on it). Usage: node smtp-server-alone.js PORT
 */
import { SMTPServer } from 'smtp-server';
import { patchGreetingDelay } from '../relay/intake/smtp-server-patch.js';

// As the relay runs it: without smtp-server's fixed 100 ms pause before each greeting.
patchGreetingDelay();

const port = Number(process.argv[2]);
const server = new SMTPServer({
  // (greetingDelayMs is the relay's patch: see relay/intake/smtp-server-patch.ts)
  name: 'alone.bench.test',
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  disableReverseLookup: true,
  logger: false,
  size: 25 * 1024 * 1024,
  greetingDelayMs: 0,
  onData(stream, _session, cb) {
    stream.on('data', () => undefined);
    stream.on('end', () => cb());
  },
} as ConstructorParameters<typeof SMTPServer>[0]);
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
