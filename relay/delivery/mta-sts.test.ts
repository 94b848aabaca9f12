/**
 * MTA-STS policies against a real dnsmasq (the `_mta-sts` TXT record and the policy host's
 * address) and a local HTTPS server with a certificate from a test CA.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { describePeer } from '../../test/peers/availability.js';
import { startDnsmasq, type Dnsmasq } from '../../test/peers/dnsmasq.js';
import { testCa, type TestCa } from '../../test/peers/tls.js';
import { fetchPolicyText, MtaStsCache, mxAllowed, type MtaStsPolicy } from './mta-sts.js';
import { MxResolver } from './mx.js';

const POLICY_HOST = 'mta-sts.example.test';
const ENFORCE = 'version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmx: *.backup.example.test\r\nmax_age: 86400\r\n';

describe('mxAllowed', () => {
  const policy = { mode: 'enforce' as const, mx: ['mx.example.test', '*.mail.example.net'] };

  it('matches exact names regardless of case and a trailing dot', () => {
    expect(mxAllowed(policy, 'mx.example.test')).toBe(true);
    expect(mxAllowed(policy, 'MX.Example.TEST.')).toBe(true);
    expect(mxAllowed(policy, 'mx2.example.test')).toBe(false);
  });

  it('lets a wildcard stand for exactly one leftmost label (RFC 8461 §4.1)', () => {
    expect(mxAllowed(policy, 'eu1.mail.example.net')).toBe(true);
    expect(mxAllowed(policy, 'mail.example.net')).toBe(false);
    expect(mxAllowed(policy, 'a.eu1.mail.example.net')).toBe(false);
    expect(mxAllowed(policy, 'eu1.evilmail.example.net')).toBe(false);
  });

  it('checks every pattern, not only the first that matches the suffix', () => {
    expect(mxAllowed({ mode: 'enforce', mx: ['*.example.net', 'a.b.example.net'] }, 'a.b.example.net')).toBe(true);
  });

  it('applies the patterns in testing mode too, and none allows everything', () => {
    expect(mxAllowed({ mode: 'testing', mx: ['mx.example.test'] }, 'other.test')).toBe(false);
    expect(mxAllowed({ mode: 'none', mx: [] }, 'other.test')).toBe(true);
  });
});

describePeer('MTA-STS policy cache and fetch', ['openssl', '/usr/sbin/dnsmasq'], () => {
  let ca: TestCa;
  let server: https.Server;
  let port: number;
  let dns: Dnsmasq | undefined;
  let dnsPort: number;
  /** What the policy server answers; tests replace it. */
  let respond: (req: IncomingMessage, res: ServerResponse) => void;
  let requests: string[];
  let warnings: string[];
  let clock: number;

  const log = { warn: (_fields: unknown, message?: string) => void warnings.push(message ?? '') };
  const serveText = (body: string, type = 'text/plain; charset=utf-8') => (_req: unknown, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': type });
    res.end(body);
  };

  /** (Re)starts dnsmasq on the same port, so a resolver made earlier sees the new records. */
  async function publish(txtId: string | undefined): Promise<void> {
    await dns?.stop();
    dns = await startDnsmasq({
      port: dnsPort,
      hosts: [{ name: POLICY_HOST, address: '127.0.0.1' }],
      txt: txtId ? [{ name: '_mta-sts.example.test', values: [`v=STSv1; id=${txtId};`] }] : [],
    });
  }

  function cache(): MtaStsCache {
    return new MtaStsCache({ dns: new MxResolver([dns!.server], 1000), port, ca: [ca.cert], log, now: () => clock });
  }

  beforeAll(async () => {
    ca = await testCa();
    const leaf = await ca.issue(POLICY_HOST);
    server = https.createServer({ key: leaf.key, cert: leaf.cert }, (req, res) => {
      requests.push(`${req.headers.host} ${req.url}`);
      respond(req, res);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
    dns = await startDnsmasq({});
    dnsPort = dns.port;
  });

  afterAll(async () => {
    await dns?.stop();
    await new Promise((r) => server.close(r));
    ca.cleanup();
  });

  beforeEach(async () => {
    respond = serveText(ENFORCE);
    requests = [];
    warnings = [];
    clock = 1_000_000;
    await publish('1');
  });

  it('fetches and parses the policy from mta-sts.DOMAIN, verified against the given CA', async () => {
    const policy = await cache().policyFor('Example.Test');
    expect(policy).toEqual<MtaStsPolicy>({
      domain: 'example.test',
      id: '1',
      mode: 'enforce',
      mx: ['mx.example.test', '*.backup.example.test'],
      maxAge: 86400,
      expiresAt: clock + 86_400_000,
    });
    expect(requests).toEqual([`${POLICY_HOST}:${port} /.well-known/mta-sts.txt`]);
  });

  it('serves the cached policy until max_age has passed, then fetches again', async () => {
    const c = cache();
    await c.policyFor('example.test');
    clock += 86_399_000;
    expect((await c.policyFor('example.test'))?.mode).toBe('enforce');
    expect(requests).toHaveLength(1);
    respond = serveText(ENFORCE.replace('enforce', 'testing'));
    clock += 2_000;
    expect((await c.policyFor('example.test'))?.mode).toBe('testing');
    expect(requests).toHaveLength(2);
  });

  it('fetches again at once when the TXT record announces a new id', async () => {
    const c = cache();
    await c.policyFor('example.test');
    respond = serveText(ENFORCE.replace('enforce', 'testing'));
    await publish('2');
    const policy = await c.policyFor('example.test');
    expect(policy).toMatchObject({ id: '2', mode: 'testing' });
    expect(requests).toHaveLength(2);
  });

  it('keeps the unexpired cached policy when a refresh fails, and says so', async () => {
    const c = cache();
    await c.policyFor('example.test');
    respond = (_req, res) => res.writeHead(500).end();
    await publish('2');
    expect(await c.policyFor('example.test')).toMatchObject({ id: '1', mode: 'enforce' });
    expect(warnings).toEqual([expect.stringMatching(/MTA-STS policy of example\.test could not be fetched \(.*HTTP 500, not 200\); keeping the cached policy \(mode enforce\)/)]);
    // Once the cached policy has expired and no fetch succeeds, there is no policy.
    clock += 86_401_000;
    expect(await c.policyFor('example.test')).toBeUndefined();
  });

  it('keeps applying a cached policy when the TXT record disappears, until it expires', async () => {
    const c = cache();
    await c.policyFor('example.test');
    await publish(undefined);
    expect((await c.policyFor('example.test'))?.mode).toBe('enforce');
    clock += 86_401_000;
    expect(await c.policyFor('example.test')).toBeUndefined();
    expect(requests).toHaveLength(1);
  });

  it('has no policy, and fetches nothing, for a domain without the TXT record', async () => {
    await publish(undefined);
    expect(await cache().policyFor('example.test')).toBeUndefined();
    expect(requests).toHaveLength(0);
    expect(warnings).toHaveLength(0);
  });

  it('goes on as if there were no policy when the first fetch fails, logs it, and does not retry at once', async () => {
    respond = serveText('<html>policy</html>', 'text/html');
    const c = cache();
    expect(await c.policyFor('example.test')).toBeUndefined();
    expect(warnings).toEqual([expect.stringMatching(/Content-Type text\/html, not text\/plain\); delivering as if the domain had none/)]);
    expect(await c.policyFor('example.test')).toBeUndefined();
    expect(requests).toHaveLength(1);
    clock += 5 * 60_000 + 1;
    respond = serveText(ENFORCE);
    expect((await c.policyFor('example.test'))?.mode).toBe('enforce');
  });

  it('treats an invalid policy file as a failed fetch', async () => {
    respond = serveText('version: STSv1\nmode: sometimes\nmx: mx.example.test\nmax_age: 600\n');
    expect(await cache().policyFor('example.test')).toBeUndefined();
    expect(warnings[0]).toMatch(/is invalid: Invalid mode field/);
  });

  it('shares one lookup between connections that ask at the same time', async () => {
    const c = cache();
    const policies = await Promise.all([c.policyFor('example.test'), c.policyFor('example.test'), c.policyFor('EXAMPLE.test')]);
    expect(policies.map((p) => p?.mode)).toEqual(['enforce', 'enforce', 'enforce']);
    expect(requests).toHaveLength(1);
  });

  describe('fetchPolicyText', () => {
    const fetchIt = (over: Partial<Parameters<typeof fetchPolicyText>[0]> = {}) =>
      fetchPolicyText({ host: POLICY_HOST, address: '127.0.0.1', port, ca: [ca.cert], timeoutMs: 2000, ...over });

    it('returns the body of a 200 text/plain answer', async () => {
      expect(await fetchIt()).toBe(ENFORCE);
    });

    it('refuses a redirect and does not follow it', async () => {
      respond = (_req, res) => res.writeHead(301, { location: `https://${POLICY_HOST}:${port}/elsewhere.txt` }).end();
      await expect(fetchIt()).rejects.toThrow(/HTTP 301 redirecting to https:\/\/mta-sts\.example\.test:\d+\/elsewhere\.txt \(redirects are not followed\)/);
      expect(requests).toEqual([`${POLICY_HOST}:${port} /.well-known/mta-sts.txt`]);
    });

    it('refuses any answer but 200', async () => {
      respond = (_req, res) => res.writeHead(204).end();
      await expect(fetchIt()).rejects.toThrow(/HTTP 204, not 200/);
      respond = (_req, res) => res.writeHead(404, { 'content-type': 'text/plain' }).end('not here');
      await expect(fetchIt()).rejects.toThrow(/HTTP 404, not 200/);
    });

    it('refuses a policy larger than 64 KiB, declared or streamed', async () => {
      const big = `${ENFORCE}${'#'.repeat(64 * 1024)}\n`;
      respond = serveText(big);
      await expect(fetchIt()).rejects.toThrow(/larger than 64 KiB/);
      respond = (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
        for (let i = 0; i < 70; i++) res.write('#'.repeat(1024));
        res.end();
      };
      await expect(fetchIt()).rejects.toThrow(/larger than 64 KiB/);
      respond = serveText(`${ENFORCE}${'#'.repeat(60 * 1024)}\n`);
      expect(await fetchIt()).toHaveLength(ENFORCE.length + 60 * 1024 + 1);
    });

    it('refuses a certificate from a CA it does not trust', async () => {
      await expect(fetchIt({ ca: undefined })).rejects.toThrow(/unable to (get local issuer|verify the first) certificate/);
    });

    it('refuses a certificate issued for another name', async () => {
      await expect(fetchIt({ host: 'mta-sts.other.test' })).rejects.toThrow(/Hostname\/IP does not match certificate's altnames/);
    });

    it('gives up on a server that does not answer in time', async () => {
      respond = () => undefined;
      await expect(fetchIt({ timeoutMs: 300 })).rejects.toThrow(/no complete answer within 300 ms/);
    });
  });
});
