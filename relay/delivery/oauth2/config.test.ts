import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../config.js';
import { MailfleetError } from '../../errors.js';
import { checkSmarthostCredentials } from '../credentials.js';

const withOAuth2 = (oauth2: Record<string, unknown>, route: Record<string, unknown> = {}) => ({
  spool: { dir: 'spool' },
  listeners: [{ name: 'dev', port: 2525, tls: 'none', auth: 'none' }],
  delivery: { route: { type: 'smarthost', host: 'smtp.office365.com', oauth2, ...route } },
});
const microsoft = { provider: 'microsoft', tenant: 'contoso.onmicrosoft.com', clientId: '00000000-0000-0000-0000-000000000001', user: 'relay@contoso.com', clientSecretFile: 'secret' };

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof MailfleetError) return `${err.code} ${err.message}`;
    throw err;
  }
  throw new Error('expected an error');
}

describe('delivery.route.oauth2', () => {
  it('takes Microsoft 365 client credentials and resolves its files against the config file', () => {
    const route = parseConfig(withOAuth2(microsoft), '/etc/mailfleet').delivery.route;
    expect(route).toMatchObject({ type: 'smarthost', oauth2: { provider: 'microsoft', clientSecretFile: '/etc/mailfleet/secret' } });
  });

  it('names the key that is missing or does not belong, for each provider', () => {
    expect(messageOf(() => parseConfig(withOAuth2({ ...microsoft, tenant: undefined }), '/'))).toMatch(/tenant.*provider microsoft needs tenant/s);
    expect(messageOf(() => parseConfig(withOAuth2({ ...microsoft, clientSecretFile: undefined }), '/'))).toMatch(/needs clientSecretFile, or certificateFile and privateKeyFile/);
    expect(messageOf(() => parseConfig(withOAuth2({ ...microsoft, certificateFile: 'c.pem', privateKeyFile: 'k.pem' }), '/'))).toMatch(/either clientSecretFile or certificateFile/);
    expect(messageOf(() => parseConfig(withOAuth2({ ...microsoft, clientSecretFile: undefined, certificateFile: 'c.pem' }), '/'))).toMatch(/certificateFile and privateKeyFile go together/);
    expect(messageOf(() => parseConfig(withOAuth2({ provider: 'google', user: 'relay@example.com', serviceAccountFile: 'sa.json', clientId: 'x' }), '/'))).toMatch(/takes its client from serviceAccountFile, not clientId/);
    expect(messageOf(() => parseConfig(withOAuth2({ provider: 'generic', user: 'u', clientId: 'c', clientSecretFile: 's' }), '/'))).toMatch(/provider generic needs tokenUrl/);
    expect(messageOf(() => parseConfig(withOAuth2({ ...microsoft, clientSecret: 'x' }), '/'))).toMatch(/oauth2.clientSecret: unknown key \(did you mean clientSecretFile\?\)/);
  });

  it('refuses a token endpoint over plain http except on loopback: the secret travels to it', () => {
    expect(messageOf(() => parseConfig(withOAuth2({ ...microsoft, tokenUrl: 'http://login.example.com/token' }), '/'))).toMatch(/must be https/);
    expect(() => parseConfig(withOAuth2({ ...microsoft, tokenUrl: 'http://127.0.0.1:8080/token' }), '/')).not.toThrow();
  });

  it('refuses a password beside oauth2', () => {
    expect(messageOf(() => parseConfig(withOAuth2(microsoft, { credentialsFile: 'creds' }), '/'))).toMatch(/either oauth2 or a user name and password/);
  });

  it('stops a start with MF_CREDENTIALS_UNREADABLE when a file is missing or is not what it should be, without its content', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-oauth2-'));
    try {
      const route = (o: Record<string, unknown>) => parseConfig(withOAuth2({ ...microsoft, ...o }), dir).delivery.route;
      expect(messageOf(() => checkSmarthostCredentials(route({})))).toMatch(/^MF_CREDENTIALS_UNREADABLE cannot read the OAuth 2.0 client secret \(ENOENT: .*secret\)/);
      fs.writeFileSync(path.join(dir, 'cert.pem'), 'not a certificate');
      fs.writeFileSync(path.join(dir, 'key.pem'), '-----BEGIN PRIVATE KEY-----\nS3CRETKEYMATERIAL\n-----END PRIVATE KEY-----\n');
      const bad = messageOf(() => checkSmarthostCredentials(route({ clientSecretFile: undefined, certificateFile: 'cert.pem', privateKeyFile: 'key.pem' })));
      expect(bad).toMatch(/cert\.pem is not a PEM certificate/);
      fs.writeFileSync(path.join(dir, 'sa.json'), '{"type":"service_account"}');
      const google = () => checkSmarthostCredentials(parseConfig(withOAuth2({ provider: 'google', user: 'relay@example.com', serviceAccountFile: 'sa.json' }), dir).delivery.route);
      expect(messageOf(google)).toMatch(/sa\.json has no client_email and private_key/);
      const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      const key = { client_email: 'relay@p.iam.gserviceaccount.com', private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }), token_uri: 'http://oauth2.example.com/token' };
      fs.writeFileSync(path.join(dir, 'sa.json'), JSON.stringify(key));
      expect(messageOf(google)).toMatch(/token_uri http:\/\/oauth2\.example\.com\/token: the token endpoint must be https/);
      fs.writeFileSync(path.join(dir, 'sa.json'), JSON.stringify({ ...key, token_uri: 'https://oauth2.googleapis.com/token' }));
      expect(google).not.toThrow();
      fs.writeFileSync(path.join(dir, 'secret'), 'the-secret-value\n');
      expect(() => checkSmarthostCredentials(route({}))).not.toThrow();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
