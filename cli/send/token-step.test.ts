import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { smarthostOAuth2Schema } from '../../relay/delivery/oauth2/config.js';
import { tokenRequest } from '../../relay/delivery/oauth2/grants.js';
import { describeTokenRequest } from './token-step.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailfleet-token-step-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The line `mailfleet send --oauth2` prints for the request the relay's own code builds. */
describe('describeTokenRequest', () => {
  it('names the URL, the client credentials grant, the client and the scope, not the secret', async () => {
    const secretFile = path.join(dir, 'secret');
    fs.writeFileSync(secretFile, 'a-client-secret\n');
    const cfg = smarthostOAuth2Schema.parse({ provider: 'microsoft', user: 'relay@contoso.com', tenant: 'contoso.onmicrosoft.com', clientId: 'app-id', clientSecretFile: secretFile });
    const line = describeTokenRequest(await tokenRequest(cfg, Date.now()));
    expect(line).toBe('POST https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token, client credentials grant for client app-id with a client secret, scope https://outlook.office365.com/.default');
  });

  it('names the service account and the mailbox of a Google JWT bearer grant, from its assertion', async () => {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyFile = path.join(dir, 'sa.json');
    fs.writeFileSync(keyFile, JSON.stringify({ client_email: 'relay@project.iam.gserviceaccount.com', private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }), token_uri: 'https://oauth2.googleapis.com/token' }));
    const cfg = smarthostOAuth2Schema.parse({ provider: 'google', user: 'app@example.com', serviceAccountFile: keyFile });
    const line = describeTokenRequest(await tokenRequest(cfg, Date.now()));
    expect(line).toBe('POST https://oauth2.googleapis.com/token, JWT bearer grant for service account relay@project.iam.gserviceaccount.com acting for app@example.com, scope https://mail.google.com/');
  });
});
