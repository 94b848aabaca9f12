/**
 * `mailfleet send --oauth2`'s token request, made by the relay's own code (oauth2/grants.ts,
 * oauth2/token-endpoint.ts, oauth2/token-source.ts) and printed as it happens: to which URL,
 * which grant, how long the token is valid; never the secret or the token, which are masked
 * from then on.
 */
import tls from 'node:tls';
import { decodeJwt } from 'jose';
import type { SmarthostOAuth2Config } from '../../relay/delivery/oauth2/config.js';
import { tokenRequest, type TokenRequest } from '../../relay/delivery/oauth2/grants.js';
import { requestToken } from '../../relay/delivery/oauth2/token-endpoint.js';
import { TokenSource } from '../../relay/delivery/oauth2/token-source.js';
import type { SendOptions } from './args.js';
import type { MaskedOutput } from './secrets.js';

/** The form fields that prove the client: masked as soon as they are known. */
const SECRET_FIELDS = { client_secret: 'client secret', client_assertion: 'client assertion', assertion: 'assertion' } as const;

/**
 * The session's tokens: the first is asked before connecting; the smarthost refusing one gets a
 * fresh one (TokenSource, as in the relay). A failure throws the relay's SmarthostAuthFailure.
 */
export function sessionTokens(cfg: SmarthostOAuth2Config, options: SendOptions, out: MaskedOutput): TokenSource {
  // As the relay does with delivery.tlsPolicy.caFile: Node's roots plus the private CA, so a public endpoint still verifies.
  const ca = options.ca ? [...tls.rootCertificates, options.ca] : undefined;
  return new TokenSource(async () => {
    const req = await tokenRequest(cfg, Date.now());
    for (const [field, what] of Object.entries(SECRET_FIELDS)) {
      const value = req.form[field];
      if (value) out.hide(value, what);
    }
    out.log(`* token request: ${describeTokenRequest(req)}`);
    const issued = await requestToken(req, { timeoutMs: options.timeoutSeconds * 1000, ca });
    out.hide(issued.accessToken, 'access token');
    out.log(`* token received, valid ${issued.expiresIn} s`);
    return issued;
  }, Date.now);
}

/** E.g. `POST https://login.microsoftonline.com/T/oauth2/v2.0/token, client credentials grant for client ID with a client secret, scope S`. */
export function describeTokenRequest(req: TokenRequest): string {
  const { form } = req;
  const url = new URL(req.url);
  const where = `POST ${url.origin}${url.pathname}`;
  if (form.grant_type === 'client_credentials') {
    const proof = form.client_assertion ? 'a certificate (signed client assertion, private_key_jwt)' : 'a client secret';
    return `${where}, client credentials grant for client ${form.client_id} with ${proof}${form.scope ? `, scope ${form.scope}` : ''}`;
  }
  // Google's JWT bearer grant carries who and what inside the (signed, not secret) assertion.
  const claims = decodeJwt(form.assertion!);
  return `${where}, JWT bearer grant for service account ${String(claims.iss)} acting for ${String(claims.sub)}, scope ${String(claims.scope)}`;
}
