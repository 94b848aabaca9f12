/**
 * smtp-server with nothing behind it: accepts every message and drops it. `npm run
 * bench:engines` sets it beside the relay's own engine (bench/engine-alone.ts), which replaced
 * it, and the floor. Usage: node smtp-server-alone.js PORT
 */
import { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

// As the relay ran it: without smtp-server's fixed 100 ms pause before each greeting (which
// caps a client that opens a connection per message at 10 messages a second per session).
const proto = SMTPConnection.prototype as unknown as { init(this: { _setListeners(cb: () => void): void; connectionReady(): void }): void };
proto.init = function () {
  this._setListeners(() => this.connectionReady());
};

const port = Number(process.argv[2]);
const server = new SMTPServer({
  name: 'alone.bench.test',
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  disableReverseLookup: true,
  logger: false,
  size: 25 * 1024 * 1024,
  onData(stream, _session, cb) {
    stream.on('data', () => undefined);
    stream.on('end', () => cb());
  },
} as ConstructorParameters<typeof SMTPServer>[0]);
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
