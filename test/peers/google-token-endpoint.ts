/**
 * Google's token endpoint for service accounts, as far as the JWT bearer grant goes (RFC 7523
 * 2.1; https://developers.google.com/identity/protocols/oauth2/service-account): it verifies
 * the relay's assertion with jose against the service account's public key (signature, issuer
 * = client_email, audience = this endpoint, a lifetime of at most an hour, the scope), checks
 * that the account may act for the user it names (domain-wide delegation), and answers with an
 * access token, or with Google's errors: `invalid_grant` for a bad signature or claims,
 * `unauthorized_client` when delegation is missing. Google's real endpoint cannot run here;
 * oidc-provider has no JWT bearer grant. The tokens are JWTs signed by this endpoint's own key,
 * so the XOAUTH2 smarthost peer verifies them as it does oidc-provider's.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { exportJWK, exportPKCS8, generateKeyPair, jwtVerify, SignJWT, type JWK } from 'jose';

export const GOOGLE_MAIL_SCOPE = 'https://mail.google.com/';

export interface GoogleTokenEndpoint {
  url: string;
  issuer: string;
  jwks: { keys: JWK[] };
  /** A service account key file as Google's console downloads it (JSON), for `serviceAccountFile`. */
  serviceAccountKey: string;
  clientEmail: string;
  tokenRequests(): number;
  /** Which users the service account may act for (domain-wide delegation); default: the one given at start. */
  delegate(users: string[]): void;
  close(): Promise<void>;
}

export async function startGoogleTokenEndpoint(opts: { delegatedUser: string; tokenTtlSeconds?: number }): Promise<GoogleTokenEndpoint> {
  const account = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const clientEmail = 'mailfleet-relay@mailfleet-test.iam.gserviceaccount.com';
  const signing = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(signing.publicKey)), kid: 'google-test', alg: 'RS256', use: 'sig' };
  let delegated = [opts.delegatedUser];
  let requests = 0;
  let url = '';
  const issuer = 'https://accounts.google.test';

  const answer = (res: http.ServerResponse, status: number, body: object) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST' || req.url !== '/token') return answer(res, 404, { error: 'not_found' });
    requests++;
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      void (async () => {
        const form = new URLSearchParams(body);
        if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return answer(res, 400, { error: 'unsupported_grant_type', error_description: 'Invalid grant_type: ' + form.get('grant_type') });
        let claims;
        try {
          ({ payload: claims } = await jwtVerify(form.get('assertion') ?? '', account.publicKey, { issuer: clientEmail, audience: url, algorithms: ['RS256'] }));
        } catch (err) {
          return answer(res, 400, { error: 'invalid_grant', error_description: `Invalid JWT: ${(err as Error).message}` });
        }
        if (typeof claims.exp !== 'number' || typeof claims.iat !== 'number' || claims.exp - claims.iat > 3600) return answer(res, 400, { error: 'invalid_grant', error_description: 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.' });
        if (typeof claims.scope !== 'string' || !claims.scope.split(' ').includes(GOOGLE_MAIL_SCOPE)) return answer(res, 400, { error: 'invalid_scope', error_description: 'Invalid OAuth scope or ID token audience provided.' });
        if (typeof claims.sub !== 'string' || !delegated.includes(claims.sub)) {
          return answer(res, 401, { error: 'unauthorized_client', error_description: 'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.' });
        }
        const ttl = opts.tokenTtlSeconds ?? 3599;
        const accessToken = await new SignJWT({ scope: GOOGLE_MAIL_SCOPE, email: claims.sub })
          .setProtectedHeader({ alg: 'RS256', kid: jwk.kid })
          .setIssuer(issuer)
          .setAudience(GOOGLE_MAIL_SCOPE)
          .setSubject(claims.sub)
          .setIssuedAt()
          .setExpirationTime(`${ttl}s`)
          .sign(signing.privateKey);
        answer(res, 200, { access_token: accessToken, expires_in: ttl, token_type: 'Bearer' });
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/token`;
  const serviceAccountKey = JSON.stringify({
    type: 'service_account',
    project_id: 'mailfleet-test',
    private_key_id: crypto.randomBytes(20).toString('hex'),
    private_key: await exportPKCS8(account.privateKey),
    client_email: clientEmail,
    client_id: '100000000000000000001',
    token_uri: url,
  });
  return {
    url,
    issuer,
    jwks: { keys: [jwk] },
    serviceAccountKey,
    clientEmail,
    tokenRequests: () => requests,
    delegate: (users) => {
      delegated = users;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
