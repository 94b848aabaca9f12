/**
 * The client secret and the access tokens never reach the log, at the most verbose level, in
 * the `mailfleet relay` process as it runs in a pod: through a delivery, a token the smarthost
 * refuses, a revoked secret and a token endpoint that is down.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { M365_RESOURCE, secretClient, startOAuth2Server, type OAuth2Server } from './peers/oauth2-server.js';
import { freePort, waitForPort } from './peers/ports.js';
import { selfSignedCert, type TestCert } from './peers/tls.js';
import { startXOAuth2Smarthost, type XOAuth2Smarthost } from './peers/xoauth2-smarthost.js';
import { spawnMailfleet, type RelayProcess } from './support/process.js';
import { waitFor } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const MAILBOX = 'relay@contoso.test';
const SECRET = 'Lq7~a-client-secret-that-must-stay-secret';

let cert: TestCert;
let server: OAuth2Server;
let smarthost: XOAuth2Smarthost;
let relay: RelayProcess | undefined;
let dir: string;

beforeAll(async () => {
  cert = await selfSignedCert('127.0.0.1');
  server = await startOAuth2Server({ clients: [secretClient(SECRET)], tokenTtlSeconds: 2 });
  smarthost = await startXOAuth2Smarthost({ jwks: server.jwks, issuer: server.issuer, audience: M365_RESOURCE, mailbox: MAILBOX, key: cert.key, cert: cert.cert });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-oauth2-logs-'));
});

afterAll(async () => {
  relay?.child.kill('SIGTERM');
  await relay?.exited;
  await smarthost.close();
  await server.stop();
  cert.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('OAuth 2.0 secrets and the log', () => {
  it('logs neither the client secret nor any token at log level trace', async () => {
    const port = await freePort();
    fs.writeFileSync(path.join(dir, 'client-secret'), `${SECRET}\n`);
    const config = {
      hostname: 'relay.test',
      spool: { dir: path.join(dir, 'spool'), minFreeBytes: 0 },
      listeners: [{ name: 'in', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
      delivery: {
        route: { type: 'smarthost', host: '127.0.0.1', port: smarthost.port, tls: 'starttls', oauth2: { provider: 'microsoft', tenant: 'contoso.test', clientId: 'mailfleet-relay', clientSecretFile: path.join(dir, 'client-secret'), user: MAILBOX, tokenUrl: server.tokenUrl } },
        tlsPolicy: { caFile: cert.certFile },
        messagesPerConnection: 1,
        idleConnectionTime: 0,
      },
      retry: { minBackoff: '300ms', maxBackoff: '300ms' },
      http: { address: '127.0.0.1', port: await freePort() },
      log: { level: 'trace' },
    };
    fs.writeFileSync(path.join(dir, 'relay.yaml'), JSON.stringify(config));
    relay = spawnMailfleet(['relay', '--config', path.join(dir, 'relay.yaml')]);
    await waitForPort(port, { what: 'mailfleet relay' });
    const send = async (subject: string) => expect(await submit(port, 'app@contoso.test', ['r@dest.test'], `Subject: ${subject}\r\nMessage-ID: <${subject}@contoso.test>\r\n\r\nHi.\r\n`)).toMatch(/^250/);

    await send('plain');
    await waitFor(() => smarthost.delivered.length === 1, 'the first message');
    smarthost.refuseNextTokens(1);
    await send('refused-token');
    await waitFor(() => smarthost.delivered.length === 2, 'the second message, with a fresh token');
    await server.restart([secretClient('a-new-secret-after-revocation')]);
    await new Promise((r) => setTimeout(r, 2_100)); // the token issued before the revocation expires
    await send('revoked');
    await relay.waitForLog(/"reason":"token_client_rejected"/);
    await server.stop();
    await relay.waitForLog(/"reason":"token_endpoint_unreachable"/);
    await server.restart([secretClient(SECRET)]);
    await waitFor(() => smarthost.delivered.length === 3, 'the third message, once the endpoint is back');

    const log = relay.output();
    expect(log).toContain('"event":"delivered"');
    expect(smarthost.tokensSeen.length).toBeGreaterThanOrEqual(3);
    expect(log).not.toContain(SECRET);
    for (const token of smarthost.tokensSeen) expect(log).not.toContain(token);
    // No JWT of any kind (access token or client assertion): their header starts "eyJ".
    expect(log).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  });
});
