/**
 * Google Workspace through a service account with domain-wide delegation: the relay signs a
 * JWT bearer assertion with the key file's private key, gets a token from the endpoint the key
 * file names, and authenticates with XOAUTH2 to a smarthost that answers as Gmail does.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GOOGLE_MAIL_SCOPE, startGoogleTokenEndpoint, type GoogleTokenEndpoint } from './peers/google-token-endpoint.js';
import { selfSignedCert, type TestCert } from './peers/tls.js';
import { startXOAuth2Smarthost, type XOAuth2Smarthost } from './peers/xoauth2-smarthost.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const MAILBOX = 'relay@example.test';
const MSG = (subject: string) => `From: app@example.test\r\nTo: r@dest.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.test>\r\n\r\nHello.\r\n`;

let cert: TestCert;
let dir: string;
beforeAll(async () => {
  cert = await selfSignedCert('127.0.0.1');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-google-'));
});
afterAll(() => {
  cert.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

let google: GoogleTokenEndpoint | undefined;
let smarthost: XOAuth2Smarthost | undefined;
let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.stop();
  await smarthost?.close();
  await google?.close();
  relay = smarthost = google = undefined;
});

async function setup(delegatedUser: string) {
  google = await startGoogleTokenEndpoint({ delegatedUser });
  smarthost = await startXOAuth2Smarthost({ jwks: google.jwks, issuer: google.issuer, audience: GOOGLE_MAIL_SCOPE, mailbox: MAILBOX, key: cert.key, cert: cert.cert, style: 'google' });
  const keyFile = path.join(dir, `service-account-${Date.now()}.json`);
  fs.writeFileSync(keyFile, google.serviceAccountKey);
  // No tokenUrl: the relay takes token_uri from the key file, as for Google's own.
  relay = await startTestRelay({
    delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: smarthost.port, tls: 'starttls', oauth2: { provider: 'google', user: MAILBOX, serviceAccountFile: keyFile } }, tlsPolicy: { caFile: cert.certFile } },
    retry: { minBackoff: '300ms', maxBackoff: '300ms' },
  });
  return relay;
}

async function metric(r: TestRelay, series: string): Promise<number> {
  const line = (await r.metricsText()).split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('OAuth 2.0 smarthost (Google service account)', () => {
  it('delivers as the delegated user with a token from the JWT bearer grant', async () => {
    await setup(MAILBOX);
    for (const s of ['g1', 'g2']) expect(await submit(relay!.ports.open!, 'app@example.test', ['r@dest.test'], MSG(s))).toMatch(/^250/);
    await waitFor(() => smarthost!.delivered.length === 2, 'both messages at the smarthost');
    expect(smarthost!.delivered.every((m) => m.user === MAILBOX)).toBe(true);
    expect(google!.tokenRequests()).toBe(1);
  });

  it('defers with token_not_authorized while domain-wide delegation is missing, and delivers once it is granted', async () => {
    await setup('someone-else@example.test');
    expect(await submit(relay!.ports.open!, 'app@example.test', ['r@dest.test'], MSG('delegation'))).toMatch(/^250/);
    await waitFor(async () => (await metric(relay!, 'mailfleet_relay_smarthost_auth_failures_total{reason="token_not_authorized"}')) >= 1, 'a failure counted as token_not_authorized');
    expect(await metric(relay!, 'mailfleet_relay_smarthost_auth_failing{reason="token_not_authorized"}')).toBe(1);
    expect(smarthost!.auths).toEqual([]);
    google!.delegate([MAILBOX]);
    await waitFor(() => smarthost!.delivered.length === 1, 'the message once delegation is granted');
    expect(await metric(relay!, 'mailfleet_relay_deliveries_total{result="bounced",route="smarthost",provider="smarthost"}')).toBe(0);
  });
});
