/**
 * The smarthost's OAuth 2.0 settings (delivery.route.oauth2): which provider, which client,
 * which files hold its secret. Checked here, so a missing piece is a config error that names
 * the key, not a token request that fails later.
 */
import { z } from 'zod';
import { strict } from '../../config-strict.js';

/**
 * OAuth 2.0 for the smarthost (SASL XOAUTH2): Microsoft 365 after Basic authentication ends,
 * Google Workspace with a service account, or any token endpoint. Secrets come from files.
 */
export const smarthostOAuth2Schema = strict({
  provider: z.enum(['microsoft', 'google', 'generic']).describe('`microsoft`: Entra ID client credentials (a client secret, or a certificate: private_key_jwt); `google`: a service account with domain-wide delegation (JWT bearer grant); `generic`: client credentials at `tokenUrl`. See docs/providers.md.'),
  user: z.string().min(1).describe('The mailbox the relay authenticates as (the XOAUTH2 user), e.g. relay@contoso.com; for Google, the user the service account acts for.'),
  tenant: z.string().regex(/^[A-Za-z0-9.-]+$/, 'a tenant ID (a GUID) or a domain such as contoso.onmicrosoft.com').optional().describe('Microsoft: the directory (tenant) ID or its domain.'),
  clientId: z.string().min(1).optional().describe('Microsoft and generic: the application (client) ID.'),
  clientSecretFile: z.string().optional().describe('A file holding the client secret (a Secret key). Or certificateFile and privateKeyFile.'),
  certificateFile: z.string().optional().describe('Microsoft and generic: the PEM certificate registered with the application; the relay signs a client assertion with privateKeyFile (private_key_jwt) instead of sending a secret.'),
  privateKeyFile: z.string().optional().describe("The certificate's PEM private key."),
  serviceAccountFile: z.string().optional().describe("Google: the service account's JSON key file."),
  tokenUrl: z.url().optional().describe('The token endpoint. Default for microsoft: https://login.microsoftonline.com/TENANT/oauth2/v2.0/token (set it for a national cloud); google: the key file\'s token_uri; required for generic. https only, except on loopback.'),
  scope: z.string().min(1).optional().describe('Default for microsoft: https://outlook.office365.com/.default; google: https://mail.google.com/; generic: none sent.'),
}).superRefine((o, ctx) => {
  const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
  const cert = o.certificateFile !== undefined || o.privateKeyFile !== undefined;
  if (o.provider === 'google') {
    if (!o.serviceAccountFile) issue('serviceAccountFile', 'provider google needs serviceAccountFile (the service account\'s JSON key)');
    for (const k of ['clientId', 'clientSecretFile', 'certificateFile', 'privateKeyFile', 'tenant'] as const) if (o[k] !== undefined) issue(k, `provider google takes its client from serviceAccountFile, not ${k}`);
  } else {
    if (o.serviceAccountFile !== undefined) issue('serviceAccountFile', `serviceAccountFile is for provider google, not ${o.provider}`);
    if (!o.clientId) issue('clientId', `provider ${o.provider} needs clientId`);
    if (o.clientSecretFile !== undefined && cert) issue('clientSecretFile', 'give either clientSecretFile or certificateFile and privateKeyFile, not both');
    else if (o.clientSecretFile === undefined && !cert) issue('clientSecretFile', `provider ${o.provider} needs clientSecretFile, or certificateFile and privateKeyFile`);
    else if (cert && (o.certificateFile === undefined || o.privateKeyFile === undefined)) issue(o.certificateFile === undefined ? 'certificateFile' : 'privateKeyFile', 'certificateFile and privateKeyFile go together');
  }
  if (o.provider === 'microsoft' && !o.tenant) issue('tenant', 'provider microsoft needs tenant (the directory ID or a domain such as contoso.onmicrosoft.com)');
  if (o.provider === 'generic' && !o.tokenUrl) issue('tokenUrl', 'provider generic needs tokenUrl');
  const problem = o.tokenUrl ? tokenUrlProblem(o.tokenUrl) : undefined;
  if (problem) issue('tokenUrl', problem);
});

/** Why the relay will not send credentials to this token endpoint, if it will not: https only, plain http on loopback (tests). */
export function tokenUrlProblem(tokenUrl: string): string | undefined {
  let url: URL;
  try {
    url = new URL(tokenUrl);
  } catch {
    return `${tokenUrl} is not a URL`;
  }
  const loopback = /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/.test(url.hostname);
  if (url.protocol === 'https:' || (url.protocol === 'http:' && loopback)) return undefined;
  return 'the token endpoint must be https (plain http only on loopback, for tests): the client secret or assertion travels to it';
}

export type SmarthostOAuth2Config = z.output<typeof smarthostOAuth2Schema>;
