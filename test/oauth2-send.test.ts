/**
 * `mailfleet send --oauth2` (the real command from dist/, as a process) against a real OAuth 2.0
 * authorization server (oidc-provider) and a smarthost that verifies its tokens and answers a
 * password as Microsoft 365 does after Basic authentication ends (test/peers/xoauth2-smarthost.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SMARTHOST_AUTH_REASONS } from '../relay/delivery/smarthost-auth.js';
import { M365_RESOURCE, M365_SCOPE, secretClient, startOAuth2Server, type OAuth2Server } from './peers/oauth2-server.js';
import { selfSignedCert, type TestCert } from './peers/tls.js';
import { startXOAuth2Smarthost, type XOAuth2Smarthost } from './peers/xoauth2-smarthost.js';
import { spawnMailfleet } from './support/process.js';

const MAILBOX = 'relay@contoso.test';
const SECRET = 'Kq8~send-client-secret-value-7c1d';
const PASSWORD = 'an-old-basic-auth-password';


let tlsCert: TestCert;
let dir: string;
beforeAll(async () => {
  tlsCert = await selfSignedCert('127.0.0.1');
  dir = fs.mkdtempSync(path.join(tlsCert.dir, 'send-'));
  return () => tlsCert.cleanup();
});

let server: OAuth2Server | undefined;
let smarthost: XOAuth2Smarthost | undefined;
afterEach(async () => {
  await smarthost?.close();
  await server?.stop();
  server = smarthost = undefined;
});

async function peers(style?: 'microsoft' | 'google') {
  server = await startOAuth2Server({ clients: [secretClient(SECRET)], tokenTtlSeconds: 3600 });
  smarthost = await startXOAuth2Smarthost({ jwks: server.jwks, issuer: server.issuer, audience: M365_RESOURCE, mailbox: MAILBOX, key: tlsCert.key, cert: tlsCert.cert, style });
}

function file(name: string, content: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, `${content}\n`);
  return f;
}

/** `mailfleet send` to the smarthost over verified STARTTLS, with `auth` (the OAuth 2.0 or password options). */
async function send(auth: string[]) {
  const p = spawnMailfleet(['send', '--server', `127.0.0.1:${smarthost!.port}`, '--starttls', '--ca', tlsCert.certFile, '--from', MAILBOX, '--to', 'someone@dest.test', '--timeout', '5', ...auth]);
  const code = await p.exited;
  const output = p.output();
  // Whatever happened, no secret reaches the screen: not the client secret, no token the smarthost saw, not the password.
  for (const secret of [SECRET, PASSWORD, ...smarthost!.tokensSeen]) {
    expect(output).not.toContain(secret);
    expect(output).not.toContain(Buffer.from(secret).toString('base64'));
  }
  return { code, output, diagnosis: output.split('\n').find((l) => l.startsWith('diagnosis:')) ?? '' };
}

const microsoft = (secretFile: string) => ['--user', MAILBOX, '--oauth2', 'microsoft', '--tenant', 'contoso.onmicrosoft.test', '--client-id', 'mailfleet-relay', '--client-secret-file', secretFile, '--token-url', server!.tokenUrl];

function expectReason(diagnosis: string, failedStep: string, reason: keyof typeof SMARTHOST_AUTH_REASONS) {
  expect(diagnosis).toContain(`${failedStep} failed: ${reason}.`);
  expect(diagnosis).toContain(SMARTHOST_AUTH_REASONS[reason].means);
  expect(diagnosis).toContain(SMARTHOST_AUTH_REASONS[reason].todo);
}

describe('mailfleet send --oauth2 (Microsoft 365 client credentials)', () => {
  it('gets a token, then sends with AUTH XOAUTH2 over STARTTLS: each step shown, the secret and the token never', async () => {
    await peers();
    const { code, output } = await send(microsoft(file('secret', SECRET)));
    expect(code, output).toBe(0);
    const tokenLine = `* token request: POST ${server!.tokenUrl}, client credentials grant for client mailfleet-relay with a client secret, scope ${M365_SCOPE}`;
    expect(output).toContain(tokenLine);
    expect(output).toMatch(/^\* token received, valid 3600 s$/m);
    // The token comes first, then the session; AUTH after TLS, its credentials masked.
    expect(output.indexOf(tokenLine)).toBeLessThan(output.indexOf('* connecting to'));
    expect(output).toMatch(/^C: STARTTLS$[\s\S]*^C: AUTH XOAUTH2 <credentials hidden>$\nS: 235 /m);
    expect(output).toMatch(/^sent: accepted for someone@dest\.test/m);
    expect(smarthost!.delivered.map((m) => m.user)).toEqual([MAILBOX]);
    expect(server!.tokenRequests()).toBe(1);
    expect(smarthost!.tokensSeen).toHaveLength(1);
  });

  it('names the token step and token_client_rejected for a wrong or revoked secret, before any SMTP', async () => {
    await peers();
    const wrong = 'Zz9~a-revoked-secret-value';
    const { code, output, diagnosis } = await send(microsoft(file('revoked', wrong)));
    expect(code, output).toBe(1);
    expect(output).not.toContain(wrong);
    expect(output).toMatch(/^error: token endpoint http:\/\/127\.0\.0\.1:\d+\/token answered 401 \(invalid_client/m);
    expectReason(diagnosis, 'the token request', 'token_client_rejected');
    expect(diagnosis).toContain('--client-secret-file');
    expect(output).not.toContain('* connecting to');
    expect(smarthost!.auths).toEqual([]);
  });

  it('names token_endpoint_unreachable when the token endpoint is down', async () => {
    await peers();
    await server!.stop();
    const { code, output, diagnosis } = await send(microsoft(file('secret', SECRET)));
    expect(code, output).toBe(1);
    expect(output).toMatch(/^error: token endpoint http:\/\/127\.0\.0\.1:\d+\/token: .*ECONNREFUSED/m);
    expectReason(diagnosis, 'the token request', 'token_endpoint_unreachable');
    expect(smarthost!.auths).toEqual([]);
  });

  it('names credentials_unreadable when the secret file is missing', async () => {
    await peers();
    const { code, diagnosis } = await send(microsoft(path.join(dir, 'no-such-secret')));
    expect(code).toBe(1);
    expectReason(diagnosis, 'the token request', 'credentials_unreadable');
    expect(server!.tokenRequests()).toBe(0);
  });

  it('asks for a fresh token once when the smarthost refuses one (revoked early), as the relay does, and sends', async () => {
    await peers();
    smarthost!.refuseNextTokens(1);
    const { code, output } = await send(microsoft(file('secret', SECRET)));
    expect(code, output).toBe(0);
    expect(output).toMatch(/^C: AUTH XOAUTH2 <credentials hidden>\nS: 535 5\.7\.3 .*\n(?:\* User .* failed to authenticate\n)?\* the smarthost refused the token: asking the token endpoint for a fresh one and trying once more, as the relay does\n\* token request: .*\n\* token received, valid 3600 s\nC: AUTH XOAUTH2 <credentials hidden>\nS: 235 /m);
    expect(server!.tokenRequests()).toBe(2);
    expect(smarthost!.delivered).toHaveLength(1);
  });

  it('names the SMTP AUTH step and credentials_rejected when the smarthost refuses the fresh token too', async () => {
    await peers();
    smarthost!.refuseNextTokens(2);
    const { code, output, diagnosis } = await send(microsoft(file('secret', SECRET)));
    expect(code, output).toBe(1);
    expect(output.match(/^C: AUTH XOAUTH2 /gm)).toHaveLength(2);
    expectReason(diagnosis, 'the SMTP step AUTH XOAUTH2', 'credentials_rejected');
    expect(server!.tokenRequests()).toBe(2);
    expect(smarthost!.delivered).toEqual([]);
  });

  it("answers Gmail's 334 challenge for a refused token with one fresh token", async () => {
    await peers('google');
    smarthost!.refuseNextTokens(1);
    const { code, output } = await send(microsoft(file('secret', SECRET)));
    expect(code, output).toBe(0);
    expect(output).toMatch(/^S: 334 .*\nC: <credentials hidden>\n/m);
    expect(output).toContain('* the smarthost refused the token: asking the token endpoint for a fresh one');
    expect(server!.tokenRequests()).toBe(2);
    expect(smarthost!.delivered).toHaveLength(1);
  });

  it('says basic_auth_disabled, and to use --oauth2, when a password meets 535 5.7.139', async () => {
    await peers();
    const { code, output, diagnosis } = await send(['--user', MAILBOX, '--password-file', file('password', PASSWORD)]);
    expect(code, output).toBe(1);
    expect(output).toMatch(/^S: 535 5\.7\.139 Authentication unsuccessful, basic authentication is disabled/m);
    expectReason(diagnosis, 'the SMTP step AUTH PLAIN', 'basic_auth_disabled');
    expect(diagnosis).toContain('--oauth2 microsoft');
    expect(diagnosis).toContain('docs/providers.md');
  });

  it('takes the smarthost, its TLS and its oauth2 from a relay config with --config, as the relay would use them', async () => {
    await peers();
    const configDir = fs.mkdtempSync(path.join(dir, 'config-'));
    fs.writeFileSync(path.join(configDir, 'client-secret'), `${SECRET}\n`);
    // Relative paths, resolved against the config's directory as the relay does.
    const config = [
      'spool: { dir: spool }',
      'listeners: [{ name: open, port: 2525, tls: none, auth: none }]',
      'delivery:',
      '  route:',
      `    { type: smarthost, host: 127.0.0.1, port: ${smarthost!.port}, tls: starttls,`,
      `      oauth2: { provider: microsoft, tenant: contoso.onmicrosoft.test, clientId: mailfleet-relay, user: ${MAILBOX}, clientSecretFile: client-secret, tokenUrl: "${server!.tokenUrl}" } }`,
      `  tlsPolicy: { caFile: ${tlsCert.certFile} }`,
    ].join('\n');
    fs.writeFileSync(path.join(configDir, 'relay.yaml'), config);
    const p = spawnMailfleet(['send', '--config', path.join(configDir, 'relay.yaml'), '--from', MAILBOX, '--to', 'someone@dest.test', '--timeout', '5']);
    const code = await p.exited;
    const output = p.output();
    expect(code, output).toBe(0);
    expect(output).toContain(`* token request: POST ${server!.tokenUrl}, client credentials grant`);
    expect(output).toContain('* certificate verified');
    expect(output).toMatch(/^C: AUTH XOAUTH2 <credentials hidden>$/m);
    for (const secret of [SECRET, ...smarthost!.tokensSeen]) expect(output).not.toContain(secret);
    expect(smarthost!.delivered.map((m) => m.user)).toEqual([MAILBOX]);
  });

  it('refuses incomplete OAuth 2.0 options with the config schema\'s words and exit 2', async () => {
    await peers();
    const p = spawnMailfleet(['send', '--server', `127.0.0.1:${smarthost!.port}`, '--starttls', '--from', MAILBOX, '--to', 'x@dest.test', '--user', MAILBOX, '--oauth2', 'microsoft', '--client-id', 'mailfleet-relay']);
    expect(await p.exited).toBe(2);
    expect(p.output()).toContain('--tenant: provider microsoft needs tenant (the directory ID or a domain such as contoso.onmicrosoft.com)');
    expect(p.output()).toContain('--client-secret-file: provider microsoft needs clientSecretFile, or certificateFile and privateKeyFile');
    expect(smarthost!.auths).toEqual([]);
  });
});
