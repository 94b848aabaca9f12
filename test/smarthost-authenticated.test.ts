/**
 * The MailRelay's SmarthostAuthenticated condition end to end: the real operator (on the API
 * emulator) scrapes real relays standing in for its pods, which deliver through a smarthost
 * that answers as Microsoft 365 does after Basic authentication ends (test/peers/xoauth2-smarthost.ts),
 * with tokens from a real OAuth 2.0 server. One "pod" still has a password, the other OAuth 2.0:
 * a fleet halfway through the move.
 *
 * Why the emulator and not the real kube-apiserver (test/cluster): the pods here must be real
 * relays with their /metrics on a loopback port, and the emulator takes a Pod with any
 * containerPort and status the test writes; the autoscaler's scrape is the same code either way.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { SMARTHOST_AUTH_REASONS } from '../relay/delivery/smarthost-auth.js';
import type { RunningOperator } from '../operator/main.js';
import type { KubeEmulator } from './kube/emulator.js';
import { M365_RESOURCE, secretClient, startOAuth2Server, type OAuth2Server } from './peers/oauth2-server.js';
import { selfSignedCert, type TestCert } from './peers/tls.js';
import { startXOAuth2Smarthost, type XOAuth2Smarthost } from './peers/xoauth2-smarthost.js';
import { startCluster, startTestOperator } from './support/operator.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const MAILBOX = 'relay@contoso.test';
const SECRET = 'Kq8~first-client-secret-value-9f2e';
const MSG = (subject: string) => `From: app@contoso.test\r\nTo: r@dest.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@contoso.test>\r\n\r\nHello.\r\n`;
const RELAY = { apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: 'mail', name: 'outbound' };

type Condition = { type: string; status: string; reason: string; message: string };
type Obj = { metadata: { name: string }; spec?: Record<string, unknown>; status?: { conditions?: Condition[] } };

let tlsCert: TestCert;
let server: OAuth2Server;
let smarthost: XOAuth2Smarthost;
let basic: TestRelay;
let oauth2: TestRelay;
let cluster: KubeEmulator;
let operator: RunningOperator;
let dir: string;

beforeAll(async () => {
  tlsCert = await selfSignedCert('127.0.0.1');
  // Tokens of 3 s: a secret revoked later is met at the next token request, within seconds.
  server = await startOAuth2Server({ clients: [secretClient(SECRET)], tokenTtlSeconds: 3 });
  smarthost = await startXOAuth2Smarthost({ jwks: server.jwks, issuer: server.issuer, audience: M365_RESOURCE, mailbox: MAILBOX, key: tlsCert.key, cert: tlsCert.cert });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-smarthost-auth-'));
  fs.writeFileSync(path.join(dir, 'upstream'), `${MAILBOX}:an-old-password\n`);
  fs.writeFileSync(path.join(dir, 'client-secret'), `${SECRET}\n`);
  const route = { type: 'smarthost' as const, host: '127.0.0.1', port: smarthost.port, tls: 'starttls' as const };
  const retry = { minBackoff: '1h', maxBackoff: '1h' };
  basic = await startTestRelay({ delivery: { route: { ...route, credentialsFile: path.join(dir, 'upstream') }, tlsPolicy: { caFile: tlsCert.certFile } }, retry });
  oauth2 = await startTestRelay({
    delivery: { route: { ...route, oauth2: { provider: 'microsoft', tenant: 'contoso.onmicrosoft.test', clientId: 'mailfleet-relay', user: MAILBOX, tokenUrl: server.tokenUrl, clientSecretFile: path.join(dir, 'client-secret') } }, tlsPolicy: { caFile: tlsCert.certFile } },
    retry,
  });
  cluster = await startCluster();
  operator = await startTestOperator(cluster);
  return async () => {
    await operator?.stop();
    await cluster?.stop();
    await basic?.stop();
    await oauth2?.stop();
    await smarthost?.close();
    await server?.stop();
    tlsCert.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  };
}, 60_000);

async function request(method: string, urlPath: string, body: object, contentType = 'application/json'): Promise<void> {
  const res = await fetch(`${cluster.url}${urlPath}`, { method, headers: { 'content-type': contentType }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${urlPath}: ${res.status} ${await res.text()}`);
}
const apply = (urlPath: string, object: object) => request('PATCH', `${urlPath}?fieldManager=kubectl&force=true`, object, 'application/apply-patch+yaml');

/** A relay pod as the kubelet would report it: Ready, its IP loopback and its metrics port the test relay's. */
async function pod(name: string, relay: TestRelay): Promise<void> {
  const labels = { 'app.kubernetes.io/name': 'mailfleet-relay', 'app.kubernetes.io/instance': 'outbound', 'app.kubernetes.io/managed-by': 'mailfleet-operator' };
  await request('POST', '/api/v1/namespaces/mail/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'mail', labels }, spec: { containers: [{ name: 'relay', image: 'mailfleet:test', ports: [{ name: 'metrics', containerPort: relay.httpPort }] }] } });
  await request('PATCH', `/api/v1/namespaces/mail/pods/${name}/status`, { status: { phase: 'Running', podIP: '127.0.0.1', conditions: [{ type: 'Ready', status: 'True' }] } }, 'application/merge-patch+json');
}

const conditions = () => (cluster.get(RELAY) as unknown as Obj | undefined)?.status?.conditions ?? [];
const authCondition = () => conditions().find((c) => c.type === 'SmarthostAuthenticated');
const mailRelay = (delivery: object) => ({
  apiVersion: RELAY.apiVersion,
  kind: RELAY.kind,
  metadata: { name: RELAY.name, namespace: RELAY.namespace },
  spec: { tlsSecretName: 'outbound-tls', usersSecretName: 'outbound-users', autoscaling: { interval: '1s' }, delivery },
});

it('reads the pods\' smarthost authentication into SmarthostAuthenticated: NotYetAttempted, then False with the reason and what to do (a Warning Event), True once only OAuth 2.0 pods are left, False again when the client secret is revoked, gone when the route needs no credentials', async () => {
  for (const [name, data] of [['outbound-tls', { 'tls.crt': 'x', 'tls.key': 'y' }], ['outbound-users', { users: 'app:x' }], ['m365-basic', { username: MAILBOX, password: 'an-old-password' }]] as const) {
    await apply(`/api/v1/namespaces/mail/secrets/${name}`, { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'mail' }, stringData: data });
  }
  const smarthostRoute = { route: 'smarthost', smarthost: { host: 'smtp.office365.com', credentialsSecretName: 'm365-basic' } };
  await apply('/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/outbound', mailRelay(smarthostRoute));
  await pod('outbound-basic', basic);
  await pod('outbound-oauth2', oauth2);

  // Nothing delivered yet: neither pod has tried.
  await waitFor(() => authCondition()?.reason === 'NotYetAttempted', 'SmarthostAuthenticated NotYetAttempted', 20_000);
  expect(authCondition()).toMatchObject({ status: 'Unknown', message: expect.stringContaining('none of 2 relay pods has authenticated to the smarthost yet') });

  for (const [relay, subject] of [[basic, 'basic'], [oauth2, 'oauth2']] as const) expect(await submit(relay.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG(subject))).toMatch(/^250/);
  await waitFor(() => smarthost.delivered.length === 1, 'the OAuth 2.0 pod delivered');
  await waitFor(() => authCondition()?.reason === 'BasicAuthDisabled', 'SmarthostAuthenticated BasicAuthDisabled', 20_000);
  const failed = authCondition()!;
  expect(failed.status).toBe('False');
  expect(failed.message).toContain('1 of 2 relay pods could not authenticate to the smarthost at the last attempt (basic_auth_disabled)');
  expect(failed.message).toContain(SMARTHOST_AUTH_REASONS.basic_auth_disabled.todo);
  const events = () => cluster.list({ apiVersion: 'v1', kind: 'Event', namespace: 'mail' }) as unknown as { type: string; reason: string; message: string; involvedObject: { kind: string; name: string } }[];
  await waitFor(() => events().some((e) => e.reason === 'BasicAuthDisabled'), 'a Warning Event');
  expect(events().filter((e) => e.reason === 'BasicAuthDisabled')).toEqual([expect.objectContaining({ type: 'Warning', message: failed.message, involvedObject: expect.objectContaining({ kind: 'MailRelay', name: 'outbound' }) })]);
  // The MailRelay controller's conditions and the autoscaler's live side by side in the one list.
  await waitFor(() => conditions().find((c) => c.type === 'Ready')?.status === 'True', 'Ready beside it', 20_000);
  expect(authCondition()?.reason).toBe('BasicAuthDisabled');

  // The password pod goes: the fleet authenticates.
  const res = await fetch(`${cluster.url}/api/v1/namespaces/mail/pods/outbound-basic`, { method: 'DELETE' });
  expect(res.ok).toBe(true);
  await waitFor(() => authCondition()?.reason === 'Authenticated', 'SmarthostAuthenticated Authenticated', 20_000);
  expect(authCondition()).toMatchObject({ status: 'True', message: '1 of 1 relay pod authenticated to the smarthost; none is failing' });

  // The client secret is revoked (an administrator deletes it in Entra ID): once the token in
  // hand has expired, the next delivery meets the token endpoint's refusal, and the condition says so.
  await server.restart([secretClient('a-secret-made-after-the-revocation')]);
  await new Promise((r) => setTimeout(r, 3_100)); // the token issued before the revocation expires
  expect(await submit(oauth2.ports.open!, 'app@contoso.test', ['r@dest.test'], MSG('revoked'))).toMatch(/^250/);
  await waitFor(() => authCondition()?.reason === 'TokenClientRejected', 'SmarthostAuthenticated TokenClientRejected', 20_000);
  expect(authCondition()).toMatchObject({ status: 'False', message: expect.stringContaining('(token_client_rejected)') });
  expect(authCondition()!.message).toContain(SMARTHOST_AUTH_REASONS.token_client_rejected.todo);
  expect(smarthost.delivered).toHaveLength(1);

  // Route mx: the relay no longer authenticates anywhere; the condition goes, the others stay.
  await apply('/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/outbound', mailRelay({ ...smarthostRoute, route: 'mx' }));
  await waitFor(() => !authCondition(), 'SmarthostAuthenticated removed', 20_000);
  expect(conditions().map((c) => c.type).sort()).toEqual(['Degraded', 'Progressing', 'Ready']);
}, 120_000);
