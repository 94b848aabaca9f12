/**
 * A smarthost as Microsoft 365 answers after Basic authentication ends, on smtp-server with
 * STARTTLS: AUTH XOAUTH2 is accepted only with an access token that verifies against the
 * authorization server's keys (jose), issued for Exchange Online and still valid, for the
 * mailbox it names; a wrong or expired token gets `535 5.7.3`, and a user name and password get
 * `535 5.7.139 ... basic authentication is disabled`. `style: 'google'` answers a refused token
 * as Gmail does: a 334 challenge with a JSON error, then 535 5.7.8.
 */
import type net from 'node:net';
import { createLocalJWKSet, jwtVerify, type JWK } from 'jose';
import { SMTPServer } from 'smtp-server';

export interface SmarthostMessage {
  from: string;
  to: string[];
  user: string;
  raw: string;
}

export interface XOAuth2Smarthost {
  port: number;
  delivered: SmarthostMessage[];
  /** Every AUTH: its method, and the refusal if there was one. */
  auths: { method: string; refused?: string }[];
  /** Every access token presented (to look for them where they must not be). */
  tokensSeen: string[];
  /** Connections open at once, at most. */
  peakConnections(): number;
  /** Refuse the next `n` tokens even if valid (a token revoked before it expires). */
  refuseNextTokens(n: number): void;
  close(): Promise<void>;
}

export async function startXOAuth2Smarthost(opts: { jwks: { keys: JWK[] }; issuer: string; audience: string; mailbox: string; key: string; cert: string; style?: 'microsoft' | 'google' }): Promise<XOAuth2Smarthost> {
  const keys = createLocalJWKSet(opts.jwks);
  const delivered: SmarthostMessage[] = [];
  const auths: XOAuth2Smarthost['auths'] = [];
  const tokensSeen: string[] = [];
  let open = 0;
  let peak = 0;
  let refuse = 0;
  const google = opts.style === 'google';
  const refusal = (message: string) => Object.assign(new Error(message), { responseCode: 535 });
  const server = new SMTPServer({
    key: opts.key,
    cert: opts.cert,
    authMethods: ['XOAUTH2', 'PLAIN', 'LOGIN'],
    disableReverseLookup: true,
    logger: false,
    onConnect(_session, cb) {
      open++;
      peak = Math.max(peak, open);
      cb();
    },
    onClose() {
      open--;
    },
    onAuth(auth, _session, cb) {
      if (auth.method !== 'XOAUTH2') {
        const message = '5.7.139 Authentication unsuccessful, basic authentication is disabled. [TEST.prod.outlook.test]';
        auths.push({ method: auth.method, refused: message });
        return cb(refusal(message));
      }
      const token = auth.accessToken ?? '';
      tokensSeen.push(token);
      const refuseWith = (why: string) => {
        auths.push({ method: 'XOAUTH2', refused: why });
        // Gmail: a 334 challenge with a JSON error; the client answers it and gets 535 5.7.8.
        if (google) return cb(null, { data: { status: '400', schemes: 'Bearer', scope: 'https://mail.google.com/' } });
        cb(refusal('5.7.3 Authentication unsuccessful [TEST.prod.outlook.test]'));
      };
      if (refuse > 0) {
        refuse--;
        return refuseWith('refused by the test');
      }
      jwtVerify(token, keys, { issuer: opts.issuer, audience: opts.audience }).then(
        () => {
          if (auth.username !== opts.mailbox) return refuseWith(`user ${auth.username} is not ${opts.mailbox}`);
          auths.push({ method: 'XOAUTH2' });
          cb(null, { user: auth.username });
        },
        (err: Error) => refuseWith(err.message),
      );
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('end', () => {
        delivered.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), user: String(session.user), raw: Buffer.concat(chunks).toString() });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.server.address() as net.AddressInfo).port,
    delivered,
    auths,
    tokensSeen,
    peakConnections: () => peak,
    refuseNextTokens: (n) => {
      refuse = n;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
