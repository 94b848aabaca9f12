/**
 * AUTH PLAIN and LOGIN (RFC 4616, and LOGIN as every client speaks it), with an initial
 * response or after a 334 prompt; `*` cancels. A user name with control characters, or a
 * PLAIN message that is not three parts, is refused before the listener is asked.
 */
import { CONTROL_CHARS } from './syntax.js';

/** What the listener's onAuth gets (smtp-server's shape). */
export interface Authentication {
  method: 'PLAIN' | 'LOGIN';
  username: string;
  password: string;
  /** PLAIN: the authentication identity and the authorization identity (who to act as; '' for the same). */
  authcid?: string;
  authzid?: string;
}

type AuthCallback = (err: (Error & { responseCode?: number }) | null | undefined, response?: { user?: unknown; responseCode?: number; message?: string }) => void;

/** The next line of an exchange after a 334 prompt. */
export type AuthStep = (line: string, done: () => void) => void;

export interface AuthSession {
  send(code: number, text: string, enhanced?: string | false): void;
  /** The next line the client sends is this step's. */
  expect(step: AuthStep): void;
  authenticate(auth: Authentication, cb: AuthCallback): void;
  loggedIn(user: unknown): void;
}

const ABORTED: [number, string] = [501, 'Authentication aborted'];
const INVALID: [number, string] = [501, 'Error: invalid userdata'];

/** Starts AUTH `method` (PLAIN or LOGIN) with the command's further words. */
export function authExchange(method: string, args: string[], s: AuthSession, done: () => void): void {
  if (method === 'PLAIN') {
    if (args.length > 1) return finish(s, done, 501, 'Error: syntax: AUTH PLAIN token');
    if (!args.length) {
      s.expect((line, next) => plainToken(s, line.trim(), true, next));
      return finish(s, done, 334, '');
    }
    return plainToken(s, args[0]!, false, done);
  }
  if (args.length > 1) return finish(s, done, 501, 'Error: syntax: AUTH LOGIN');
  if (!args.length) {
    s.expect((line, next) => loginUser(s, line.trim(), true, next));
    return finish(s, done, 334, 'VXNlcm5hbWU6');
  }
  loginUser(s, args[0]!, false, done);
}

function finish(s: AuthSession, done: () => void, code: number, text: string, enhanced?: string | false): void {
  s.send(code, text, enhanced);
  done();
}

function plainToken(s: AuthSession, token: string, canAbort: boolean, done: () => void): void {
  if (canAbort && token === '*') return finish(s, done, ...ABORTED);
  const parts = Buffer.from(token, 'base64').toString().split('\x00');
  if (parts.length !== 3) return finish(s, done, ...INVALID);
  const [authzid = '', authcid = '', password = ''] = parts;
  const username = authcid || authzid;
  if (CONTROL_CHARS.test(username) || CONTROL_CHARS.test(authzid)) return finish(s, done, ...INVALID);
  verify(s, { method: 'PLAIN', username, authcid, authzid, password }, done);
}

function loginUser(s: AuthSession, encoded: string, canAbort: boolean, done: () => void): void {
  if (canAbort && encoded === '*') return finish(s, done, ...ABORTED);
  const username = Buffer.from(encoded, 'base64').toString();
  if (!username) return finish(s, done, 501, 'Error: missing username');
  if (CONTROL_CHARS.test(username)) return finish(s, done, ...INVALID);
  s.expect((line, next) => {
    const password = line.trim();
    if (password === '*') return finish(s, next, ...ABORTED);
    verify(s, { method: 'LOGIN', username, password: Buffer.from(password, 'base64').toString() }, next);
  });
  finish(s, done, 334, 'UGFzc3dvcmQ6');
}

function verify(s: AuthSession, auth: Authentication, done: () => void): void {
  s.authenticate(auth, (err, response) => {
    if (err) return finish(s, done, err.responseCode || 535, err.message);
    if (!response?.user) return finish(s, done, response?.responseCode || 535, response?.message || 'Error: Authentication credentials invalid');
    s.loggedIn(response.user);
    finish(s, done, 235, 'Authentication successful');
  });
}
