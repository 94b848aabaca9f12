/**
 * The relay's SMTP engine (relay/intake/smtp/) with nothing behind it: accepts every message
 * and drops it, as bench/smtp-server-alone.ts does with smtp-server. `npm run bench:engines`
 * sets the two beside the floor. Usage: node engine-alone.js PORT
 */
import { SmtpEngine } from '../relay/intake/smtp/server.js';

const port = Number(process.argv[2]);
const engine = new SmtpEngine({
  name: 'alone.bench.test',
  implicitTls: false,
  starttls: false,
  size: 25 * 1024 * 1024,
  maxClients: 1000,
  socketTimeout: 60_000,
  greetingDelayMs: 0,
  authEnabled: false,
  authMethods: [],
  allowInsecureAuth: false,
  onConnect: (_session, cb) => cb(),
  onAuth: (_auth, _session, cb) => cb(null, {}),
  onMailFrom: (_address, _session, cb) => cb(),
  onRcptTo: (_address, _session, cb) => cb(),
  onData(stream, _session, cb) {
    stream.on('data', () => undefined);
    stream.on('end', () => cb(null));
  },
  onClose: () => undefined,
});
engine.listen(port, '127.0.0.1', () => undefined);
process.on('SIGTERM', () => engine.server.close(() => process.exit(0)));
