/**
 * Microsoft 365 after Basic authentication: the relay gets client credentials tokens from a
 * real OAuth 2.0 authorization server (oidc-provider) and authenticates to a smarthost that
 * verifies them against that server's keys (test/peers/xoauth2-smarthost.ts), over STARTTLS.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { exportJWK } from 'jose';
import type { ClientMetadata } from 'oidc-provider';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { M365_RESOURCE, secretClient, startOAuth2Server, type OAuth2Server } from './peers/oauth2-server.js';
import { run } from './peers/proc.js';
import { selfSignedCert, type TestCert } from './peers/tls.js';
import { startXOAuth2Smarthost, type XOAuth2Smarthost } from './peers/xoauth2-smarthost.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const MAILBOX = 'relay@contoso.test';
const SECRET = 'Kq8~first-client-secret-value-9f2e';
const MSG = (subject: string) => `From: app@contoso.test\r\nTo: r@dest.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@contoso.test>\r\n\r\nHello.\r\n`;

let tlsCert: TestCert;
beforeAll(async () => {
  tlsCert = await selfSignedCert('127.0.0.1');
  return () => tlsCert.cleanup();
});

let relay: TestRelay | undefined;
let server: OAuth2Server | undefined;
let smarthost: XOAuth2Smarthost | undefined;
afterEach(async () => {
  await relay?.stop();
  await smarthost?.close();
  await server?.stop();
  relay = server = smarthost = undefined;
});

async function peers(opts: { clients?: ClientMetadata[]; ttl?: number; style?: 'microsoft' | 'google'; tokenDelayMs?: number } = {}) {
  server = await startOAuth2Server({ clients: opts.clients ?? [secretClient(SECRET)], tokenTtlSeconds: opts.ttl ?? 3600, tokenDelayMs: opts.tokenDelayMs });
  smarthost = await startXOAuth2Smarthost({ jwks: server.jwks, issuer: server.issuer, audience: M365_RESOURCE, mailbox: MAILBOX, key: tlsCert.key, cert: tlsCert.cert, style: opts.style });
  return { server, smarthost };
}

/** A relay routed through the smarthost with OAuth 2.0 (Microsoft 365 client credentials, a secret file unless `oauth2` says otherwise). */
async function relayWith(oauth2: Record<string, unknown>, delivery: Record<string, unknown> = {}) {
  relay = await startTestRelay({
    delivery: {
      route: { type: 'smarthost', host: '127.0.0.1', port: smarthost!.port, tls: 'starttls', oauth2: { provider: 'microsoft', tenant: 'contoso.onmicrosoft.test', clientId: 'mailfleet-relay', user: MAILBOX, tokenUrl: server!.tokenUrl, ...oauth2 } },
      tlsPolicy: { caFile: tlsCert.certFile },
      ...delivery,
    },
    retry: { minBackoff: '300ms', maxBackoff: '300ms' },
  });
  return relay;
}

function secretFile(dir: string, secret = SECRET): string {
  const file = path.join(dir, 'client-secret');
  fs.writeFileSync(file, `${secret}\n`);
  return file;
}

async function metric(r: TestRelay, name: string, labels: string): Promise<number> {
  const series = labels ? `${name}{${labels}} ` : `${name} `;
  const line = (await r.metricsText()).split('\n').find((l) => l.startsWith(series));
  return line ? Number(line.split(' ').pop()) : 0;
}

const deliveries = (r: TestRelay, result: string) => metric(r, 'mailfleet_relay_deliveries_total', `result="${result}",route="smarthost",provider="smarthost"`);
const authFailures = (r: TestRelay, reason: string) => metric(r, 'mailfleet_relay_smarthost_auth_failures_total', `reason="${reason}"`);
const authFailing = (r: TestRelay, reason: string) => metric(r, 'mailfleet_relay_smarthost_auth_failing', `reason="${reason}"`);

describe('OAuth 2.0 smarthost (Microsoft 365 client credentials)', () => {
  it('delivers with a client secret: one token request, XOAUTH2 as the mailbox, over STARTTLS', async () => {
    await peers();
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'relay-'));
    await relayWith({ clientSecretFile: secretFile(dir) });
    for (let i = 0; i < 3; i++) expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG(`secret${i}`))).toMatch(/^250/);
    await waitFor(() => smarthost!.delivered.length === 3, 'three messages at the smarthost');
    expect(smarthost!.delivered.every((m) => m.user === MAILBOX)).toBe(true);
    expect(smarthost!.auths.every((a) => a.method === 'XOAUTH2' && !a.refused)).toBe(true);
    expect(server!.tokenRequests()).toBe(1);
    await waitFor(async () => (await deliveries(relay!, 'delivered')) === 3, 'three deliveries counted');
    expect(await metric(relay!, 'mailfleet_relay_smarthost_auth_successes_total', '')).toBeGreaterThanOrEqual(1);
  });

  it('delivers with a certificate (private_key_jwt) instead of a secret', async () => {
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'client-'));
    const made = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=mailfleet-relay', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')]);
    expect(made.code, made.stderr).toBe(0);
    const publicJwk = await exportJWK(crypto.createPublicKey(fs.readFileSync(path.join(dir, 'key.pem'))));
    await peers({
      clients: [{ client_id: 'mailfleet-cert', grant_types: ['client_credentials'], redirect_uris: [], response_types: [], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [publicJwk] } }],
    });
    await relayWith({ clientId: 'mailfleet-cert', certificateFile: path.join(dir, 'cert.pem'), privateKeyFile: path.join(dir, 'key.pem') });
    expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('certificate'))).toMatch(/^250/);
    await waitFor(() => smarthost!.delivered.length === 1, 'the message at the smarthost');
    expect(server!.tokensIssued()).toBe(1);
  });

  it('delivers with a generic token endpoint: client credentials at tokenUrl, the scope given', async () => {
    await peers();
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'relay-'));
    await relayWith({ provider: 'generic', tenant: undefined, scope: 'https://outlook.office365.com/.default', clientSecretFile: secretFile(dir) });
    expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('generic'))).toMatch(/^250/);
    await waitFor(() => smarthost!.delivered.length === 1, 'the message at the smarthost');
    expect(server!.tokensIssued()).toBe(1);
  });

  it('refreshes tokens that expire during a run before they do: no refused AUTH, no deferral', async () => {
    await peers({ ttl: 3 });
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'relay-'));
    // A connection per message, so each one authenticates with the token of its moment.
    await relayWith({ clientSecretFile: secretFile(dir) }, { messagesPerConnection: 1, idleConnectionTime: 0 });
    const started = Date.now();
    let sent = 0;
    while (Date.now() - started < 8_000) {
      expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG(`refresh${sent++}`))).toMatch(/^250/);
      await waitFor(() => smarthost!.delivered.length === sent, 'the message at the smarthost');
    }
    expect(smarthost!.auths.filter((a) => a.refused)).toEqual([]);
    expect(await deliveries(relay!, 'deferred')).toBe(0);
    // Tokens live 3 s and are renewed at half their life: one request about every 1.5 s.
    expect(server!.tokenRequests()).toBeGreaterThanOrEqual(4);
    expect(server!.tokenRequests()).toBeLessThanOrEqual(8);
  });

  it('asks once more with a fresh token when the smarthost refuses one (revoked early), and delivers', async () => {
    await peers();
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'relay-'));
    // A connection per message: the second one authenticates anew.
    await relayWith({ clientSecretFile: secretFile(dir) }, { messagesPerConnection: 1, idleConnectionTime: 0 });
    expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('before'))).toMatch(/^250/);
    await waitFor(() => smarthost!.delivered.length === 1, 'the first message');
    smarthost!.refuseNextTokens(1);
    expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('after'))).toMatch(/^250/);
    await waitFor(() => smarthost!.delivered.length === 2, 'the second message');
    expect(smarthost!.auths.filter((a) => a.refused)).toHaveLength(1);
    expect(server!.tokenRequests()).toBe(2);
    expect(await deliveries(relay!, 'deferred')).toBe(0);
  });

  it("answers Gmail's 334 challenge for a refused token and tries once more with a fresh one", async () => {
    await peers({ style: 'google' });
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'relay-'));
    await relayWith({ clientSecretFile: secretFile(dir) });
    smarthost!.refuseNextTokens(1);
    expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('challenge'))).toMatch(/^250/);
    await waitFor(() => smarthost!.delivered.length === 1, 'the message at the smarthost');
    expect(smarthost!.auths.map((a) => Boolean(a.refused))).toEqual([true, false]);
    expect(server!.tokenRequests()).toBe(2);
  });

  it('tries a fresh token only once per connection, Gmail challenge or not: a second refusal defers, and the retry delivers', async () => {
    await peers({ style: 'google' });
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'relay-'));
    await relayWith({ clientSecretFile: secretFile(dir) });
    smarthost!.refuseNextTokens(2);
    expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('twice'))).toMatch(/^250/);
    await waitFor(async () => (await authFailures(relay!, 'credentials_rejected')) === 1, 'the second refusal counted');
    await waitFor(() => smarthost!.delivered.length === 1, 'the message on the retry, with the token fetched after the challenge');
    expect(smarthost!.auths.map((a) => Boolean(a.refused))).toEqual([true, true, false]);
    expect(server!.tokenRequests()).toBe(2);
  });

  it('defers with token_client_rejected when the secret is revoked, says so in the metrics, and delivers once the Secret has a new one', async () => {
    await peers({ ttl: 2 });
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'relay-'));
    const file = secretFile(dir);
    await relayWith({ clientSecretFile: file });
    expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('one'))).toMatch(/^250/);
    await waitFor(() => smarthost!.delivered.length === 1, 'the first message');
    // An administrator deletes the secret and makes a new one; the token issued before expires.
    await server!.restart([secretClient('Zz9~the-new-client-secret-value')]);
    await new Promise((r) => setTimeout(r, 2_100));
    expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('two'))).toMatch(/^250/);
    await waitFor(async () => (await authFailures(relay!, 'token_client_rejected')) >= 1, 'an auth failure counted as token_client_rejected');
    expect(await authFailing(relay!, 'token_client_rejected')).toBe(1);
    expect(await deliveries(relay!, 'deferred')).toBeGreaterThanOrEqual(1);
    expect(await deliveries(relay!, 'bounced')).toBe(0);
    fs.writeFileSync(file, 'Zz9~the-new-client-secret-value\n');
    await waitFor(() => smarthost!.delivered.length === 2, 'the second message, with the new secret');
    expect(await authFailing(relay!, 'token_client_rejected')).toBe(0);
  });

  it('defers with token_endpoint_unreachable while the token endpoint is down, and delivers when it is back', async () => {
    await peers({ ttl: 2 });
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'relay-'));
    await relayWith({ clientSecretFile: secretFile(dir) });
    await server!.stop();
    expect(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('down'))).toMatch(/^250/);
    await waitFor(async () => (await authFailures(relay!, 'token_endpoint_unreachable')) >= 2, 'two attempts while the endpoint is down');
    expect(smarthost!.delivered).toHaveLength(0);
    expect(await deliveries(relay!, 'bounced')).toBe(0);
    await server!.restart();
    await waitFor(() => smarthost!.delivered.length === 1, 'the message once the endpoint is back');
  });

  it('gets one token for 100 messages in flight over many connections', async () => {
    // A slow token endpoint: every connection opened meanwhile waits for the one request.
    await peers({ tokenDelayMs: 500 });
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'relay-'));
    await relayWith({ clientSecretFile: secretFile(dir) }, { maxConnectionsPerDestination: 10, messagesPerConnection: 10 });
    // Ten applications submitting ten messages each (within the listener's limits per client).
    const application = async (a: number) => {
      const replies: string[] = [];
      for (let i = 0; i < 10; i++) replies.push(await submit(relay!.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG(`many${a}-${i}`)));
      return replies;
    };
    const replies = (await Promise.all(Array.from({ length: 10 }, (_, a) => application(a)))).flat();
    expect(replies.filter((r) => !r.startsWith('250'))).toEqual([]);
    await waitFor(() => smarthost!.delivered.length === 100, 'all 100 at the smarthost', 30_000);
    expect(smarthost!.peakConnections()).toBeGreaterThan(1);
    expect(server!.tokenRequests()).toBe(1);
  });

  it('names Basic authentication turned off (535 5.7.139) when the route still has a password', async () => {
    await peers();
    const dir = fs.mkdtempSync(path.join(tlsCert.dir, 'relay-'));
    fs.writeFileSync(path.join(dir, 'upstream'), `${MAILBOX}:an-old-password\n`);
    relay = await startTestRelay({
      delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: smarthost!.port, tls: 'starttls', credentialsFile: path.join(dir, 'upstream') }, tlsPolicy: { caFile: tlsCert.certFile } },
      retry: { minBackoff: '1h', maxBackoff: '1h' },
    });
    expect(await submit(relay.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('basic'))).toMatch(/^250/);
    await waitFor(async () => (await authFailures(relay!, 'basic_auth_disabled')) === 1, 'the refusal counted as basic_auth_disabled');
    expect(await deliveries(relay, 'deferred')).toBe(1);
    expect(await deliveries(relay, 'bounced')).toBe(0);
  });
});
