/**
 * The token request each provider expects, built from delivery.route.oauth2 and the files it
 * names (read at every request, so a rotated Secret applies to the next token):
 * - microsoft and generic: the client credentials grant (RFC 6749 4.4), the client proving
 *   itself with its secret or with a JWT signed by its certificate's key (private_key_jwt,
 *   RFC 7523 2.2; Entra ID finds the certificate by the `x5t` thumbprints);
 * - google: the JWT bearer grant (RFC 7523 2.1) of a service account acting for `user`
 *   (domain-wide delegation).
 */
import crypto from 'node:crypto';
import { SignJWT } from 'jose';
import type { SmarthostOAuth2Config } from './config.js';
import { readOAuth2Files, type ServiceAccount } from './files.js';

export interface TokenRequest {
  url: string;
  form: Record<string, string>;
}

export const MICROSOFT_SCOPE = 'https://outlook.office365.com/.default';
export const GOOGLE_SCOPE = 'https://mail.google.com/';
const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** The token endpoint a configuration asks (Google's comes from its key file). */
export function tokenUrlOf(cfg: SmarthostOAuth2Config, serviceAccount?: ServiceAccount): string {
  if (cfg.tokenUrl) return cfg.tokenUrl;
  if (cfg.provider === 'microsoft') return `https://login.microsoftonline.com/${cfg.tenant}/oauth2/v2.0/token`;
  return serviceAccount?.token_uri ?? 'https://oauth2.googleapis.com/token';
}

export async function tokenRequest(cfg: SmarthostOAuth2Config, nowMs: number): Promise<TokenRequest> {
  const files = readOAuth2Files(cfg);
  if (files.kind === 'serviceAccount') {
    const { account, key } = files;
    const url = tokenUrlOf(cfg, account);
    const iat = Math.floor(nowMs / 1000);
    const assertion = await new SignJWT({ scope: cfg.scope ?? GOOGLE_SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', ...(account.private_key_id && { kid: account.private_key_id }) })
      .setIssuer(account.client_email)
      .setSubject(cfg.user)
      .setAudience(url)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 3600)
      .sign(key);
    return { url, form: { grant_type: JWT_BEARER_GRANT, assertion } };
  }
  const url = tokenUrlOf(cfg);
  const scope = cfg.scope ?? (cfg.provider === 'microsoft' ? MICROSOFT_SCOPE : undefined);
  const form: Record<string, string> = { grant_type: 'client_credentials', client_id: cfg.clientId!, ...(scope && { scope }) };
  if (files.kind === 'secret') {
    form.client_secret = files.secret;
  } else {
    form.client_assertion_type = CLIENT_ASSERTION_TYPE;
    form.client_assertion = await clientAssertion(cfg.clientId!, files.cert, files.key, url, nowMs);
  }
  return { url, form };
}

/** private_key_jwt: a short-lived JWT about the client, signed with its certificate's key. */
async function clientAssertion(clientId: string, cert: crypto.X509Certificate, key: crypto.KeyObject, audience: string, nowMs: number): Promise<string> {
  const thumbprint = (algorithm: string) => crypto.createHash(algorithm).update(cert.raw).digest('base64url');
  const iat = Math.floor(nowMs / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: key.asymmetricKeyType === 'ec' ? 'ES256' : 'RS256', typ: 'JWT', x5t: thumbprint('sha1'), 'x5t#S256': thumbprint('sha256') })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(audience)
    .setJti(crypto.randomUUID())
    .setNotBefore(iat)
    .setIssuedAt(iat)
    .setExpirationTime(iat + 600)
    .sign(key);
}
