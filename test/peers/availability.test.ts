import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decidePeer, findBinary, installHint, requirePeer } from './availability.js';

const root = path.resolve(import.meta.dirname, '../..');

/** Runs the fixture suite in a child vitest with the given environment. */
function runFixture(env: NodeJS.ProcessEnv): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(root, 'node_modules/vitest/vitest.mjs'), 'run', '--root', path.join(root, 'test/peers/fixtures')],
      { cwd: root, env, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, output: `${stdout}\n${stderr}` }),
    );
  });
}

function envWithoutCI(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.CI;
  return env;
}

describe('availability', () => {
  it('finds binaries on PATH, in sbin dirs and by absolute path', () => {
    expect(findBinary('sh')).toMatch(/\/sh$/);
    expect(findBinary('/bin/sh')).toBe('/bin/sh');
    expect(findBinary('mailfleet-no-such-binary')).toBeUndefined();
    expect(findBinary('/usr/sbin/mailfleet-no-such-binary')).toBeUndefined();
  });

  it('explains what is missing and how to install it', () => {
    expect(requirePeer('sh', ['sh', '/bin/sh'])).toEqual({ available: true });
    const r = requirePeer('dns', ['sh', 'dnsmasq-no-such', '/usr/sbin/smtp-sink-no-such']);
    expect(r.available).toBe(false);
    expect(r.reason).toContain('dnsmasq-no-such, /usr/sbin/smtp-sink-no-such');
    expect(installHint(['/usr/sbin/smtp-sink', 'dnsmasq', 'postqueue'])).toBe('sudo apt-get install -y postfix dnsmasq-base');
  });

  it('runs when present, fails in CI and skips elsewhere when missing', () => {
    expect(decidePeer('sh', ['sh'], {}, {})).toEqual({ action: 'run' });
    expect(decidePeer('x', ['no-such-x'], {}, { CI: 'true' })).toMatchObject({ action: 'fail', message: expect.stringContaining('CI must run') });
    expect(decidePeer('x', ['no-such-x'], {}, {})).toMatchObject({ action: 'skip', message: expect.stringContaining('apt-get install') });
  });

  it('in a real vitest run: a missing peer fails the run under CI=true', async () => {
    const r = await runFixture({ ...envWithoutCI(), CI: 'true' });
    expect(r.code).not.toBe(0);
    expect(r.output).toContain('peer imaginary-mta: missing mailfleet-no-such-binary');
    expect(r.output).toContain('CI must run every real-peer test');
    expect(r.output).not.toContain('the suite of a missing peer ran');
  });

  it('in a real vitest run: a missing peer is skipped with a loud warning outside CI', async () => {
    const r = await runFixture(envWithoutCI());
    expect(r.code).toBe(0);
    expect(r.output).toMatch(/!!! SKIPPING real-peer tests: peer imaginary-mta: missing mailfleet-no-such-binary \(install: sudo apt-get install -y mailfleet-no-such-binary\)/);
    expect(r.output).toMatch(/skipped/i);
  });
});
