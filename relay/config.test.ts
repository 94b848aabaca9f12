import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfig } from './config.js';
import { configReference } from './config-docs.js';
import { MailfleetError } from './errors.js';

const minimal = { spool: { dir: 'spool' }, listeners: [{ name: 'dev', port: 2525, tls: 'none', auth: 'none' }], delivery: { route: { type: 'file', dir: 'out' } } };

function errorOf(fn: () => unknown): MailfleetError {
  try {
    fn();
  } catch (err) {
    if (err instanceof MailfleetError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

describe('config', () => {
  it('fills defaults in the spirit of Postfix and resolves paths against the config file', () => {
    const c = parseConfig(minimal, '/etc/mailfleet');
    expect(c.spool.dir).toBe('/etc/mailfleet/spool');
    expect(c.delivery.maxConnectionsPerDestination).toBe(20);
    expect(c.retry).toEqual({ minBackoff: 60, maxBackoff: 3600, lifetime: 432000, delayNoticeAfter: 0 });
    expect(c.limits.maxMessageSize).toBe(25 * 1024 * 1024);
  });

  it('reads durations and sizes the way people write them', () => {
    const c = parseConfig({ ...minimal, retry: { minBackoff: '90s', maxBackoff: '2h', lifetime: '3d' }, limits: { maxMessageSize: '10MiB' }, spool: { dir: 's', minFreeBytes: '1GB' } }, '/');
    expect([c.retry.minBackoff, c.retry.maxBackoff, c.retry.lifetime]).toEqual([90, 7200, 259200]);
    expect(c.limits.maxMessageSize).toBe(10 * 1024 * 1024);
    expect(c.spool.minFreeBytes).toBe(1e9);
  });

  it('refuses unknown keys anywhere, naming the path and the key it probably meant', () => {
    const err = errorOf(() =>
      parseConfig(
        { ...minimal, limits: { maxRecipents: 10 }, http: { adress: '127.0.0.1' }, listeners: [{ ...minimal.listeners[0], tls: 'none', trustedNetwork: [] }], senderDomains: [{ domain: 'example.test', dmarc: { polcy: 'none' } }], extra: 1 },
        '/',
        'relay.yaml',
      ),
    );
    expect(err.code).toBe('MF_CONFIG_INVALID');
    expect(err.message).toContain('limits.maxRecipents: unknown key (did you mean maxRecipients?)');
    expect(err.message).toContain('http.adress: unknown key (did you mean address?)');
    expect(err.message).toContain('listeners.0.trustedNetwork: unknown key (did you mean trustedNetworks?)');
    expect(err.message).toContain('senderDomains.0.dmarc.polcy: unknown key (did you mean policy?)');
    expect(err.message).toContain('extra: unknown key');
  });

  it('caps sessions per client address well below maxConnections by default, and times out sessions that never start', () => {
    const c = parseConfig(minimal, '/');
    expect(c.limits.maxConnectionsPerClient).toBe(50);
    expect(c.limits.startTimeout).toBe(30);
    expect(c.limits.stressIdleTimeout).toBe(10);
  });

  it('names each bad field and says what is wrong', () => {
    const err = errorOf(() =>
      parseConfig({ ...minimal, listeners: [{ name: 'Sub', port: 70000, tls: 'starttls' }], retry: { minBackoff: 'soon' }, delivery: { route: { type: 'carrier-pigeon' } } }, '/', 'relay.yaml'),
    );
    expect(err.code).toBe('MF_CONFIG_INVALID');
    const text = err.describe();
    expect(text).toMatch(/relay\.yaml is invalid/);
    expect(text).toMatch(/listeners\.0\.name: lower-case/);
    expect(text).toMatch(/listeners\.0\.port: .*65535/);
    expect(text).toMatch(/retry\.minBackoff: "soon" is not a duration/);
    expect(text).toMatch(/delivery\.route\.type: /);
  });

  it('refuses combinations that cannot work: TLS without a certificate, AUTH without TLS or users', () => {
    const err = errorOf(() => parseConfig({ ...minimal, listeners: [{ name: 'sub', port: 587, tls: 'starttls', auth: 'required' }, { name: 'plain', port: 2525, tls: 'none', auth: 'required' }] }, '/'));
    expect(err.message).toMatch(/listeners\.0\.tls: listener "sub" uses TLS \(starttls\) but no tls\.certFile/);
    expect(err.message).toMatch(/listeners\.0\.auth: listener "sub" offers AUTH \(required\) but no auth\.usersFile/);
    expect(err.message).toMatch(/listeners\.1\.auth: listener "plain" requires AUTH but has no TLS/);
  });

  it('reports YAML syntax errors and unreadable files with their own codes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-cfg-'));
    fs.writeFileSync(path.join(dir, 'bad.yaml'), 'listeners: [\n  - name: x\n');
    expect(errorOf(() => loadConfigFile(path.join(dir, 'bad.yaml'))).message).toMatch(/not valid YAML/);
    expect(errorOf(() => loadConfigFile(path.join(dir, 'missing.yaml'))).code).toBe('MF_CONFIG_UNREADABLE');
    fs.rmSync(dir, { recursive: true });
  });

  it('docs/configuration.md is the reference generated from this schema (run `npm run docs` after a change)', () => {
    const committed = fs.readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
    expect(committed).toBe(configReference());
  });

  it('the example config in examples/relay.yaml is valid', () => {
    expect(() => loadConfigFile(new URL('../examples/relay.yaml', import.meta.url).pathname)).not.toThrow();
    expect(loadConfigFile(new URL('../examples/relay-m365.yaml', import.meta.url).pathname).delivery.route).toMatchObject({ type: 'smarthost', oauth2: { provider: 'microsoft', user: 'relay@contoso.com' } });
  });
});
