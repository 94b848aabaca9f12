/**
 * The README's test command does all the set-up on a fresh machine, and CI runs the same
 * scripts, so what a newcomer installs and what CI tests with cannot drift. The install itself
 * is not run here (it is CI's first step); what is checked is the wiring, and what a user who
 * is not root is told.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');
const read = (f: string) => fs.readFileSync(path.join(ROOT, f), 'utf8');

function run(file: string, args: string[], opts: { uid?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: ROOT, uid: opts.uid, gid: opts.uid, env: opts.env ?? process.env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr: err && typeof err.code !== 'number' ? `${err.message}\n${stderr}` : stderr }),
    );
  });
}

describe('npm run test:all', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-test-all-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is the README\'s test command; the README has no install line of its own, and .ci/run runs the same scripts', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts['test:all']).toBe('scripts/test-all.sh');
    const readme = read('README.md');
    const tests = readme.slice(readme.indexOf('## Tests'), readme.indexOf('\n## ', readme.indexOf('## Tests') + 1));
    expect(tests).toContain('npm run test:all');
    expect(readme).not.toMatch(/apt-get install/);
    const ci = read('.ci/run');
    expect(ci).toMatch(/^scripts\/test-peers\.sh$/m);
    expect(ci).toMatch(/^scripts\/test-all\.sh$/m);
    expect(ci, 'the package list lives in scripts/test-peers.sh only').not.toMatch(/apt-get install|PACKAGES=/);
    const all = read('scripts/test-all.sh');
    expect(all).toMatch(/^scripts\/test-peers\.sh$/m);
    // "Runs them all": the real-cluster and image suites too, not only npm test.
    expect(all).toMatch(/^npm test$/m);
    expect(all).toMatch(/^npm run test:cluster$/m);
    expect(all).toMatch(/^test\/image\/ci\.sh$/m);
  });

  it('installs the packages each real peer\'s skip line names', async () => {
    const listed = (await run('scripts/test-peers.sh', ['--list'])).stdout.trim().split('\n');
    // The packages test/peers tells a user to install when a peer is missing.
    const hinted = [...read('test/peers/availability.ts').matchAll(/^ {2}'?[\w-]+'?: '([^']+)',$/gm)].flatMap((m) => m[1]!.split(' ')).filter((p) => p !== 'bsdutils'); // bsdutils is Essential: always there
    expect(hinted.length).toBeGreaterThan(5);
    for (const p of hinted) expect(listed, `${p}, named in test/peers/availability.ts`).toContain(p);
    expect(listed).toContain('python3-dkim');
  });

  it('as a user who is not root: installs nothing, says it needs root and what to run, exit 1', async () => {
    if (process.getuid?.() !== 0) {
      const r = await run('scripts/test-all.sh', []);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('npm run test:all needs root');
      return;
    }
    // Root runs it as uid 1000, as an ordinary user would.
    const r = await run('/bin/bash', ['scripts/test-all.sh'], { uid: 1000, env: { PATH: process.env.PATH, HOME: dir } });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('npm run test:all needs root: apt-get installs the test peers, and the private Postfix instances run as root.');
    expect(r.stderr).toContain('Run:  sudo env PATH="$PATH" npm run test:all');
    expect(r.stdout).toBe('');
  });

  it('scripts/test-peers.sh, not root and with packages missing, names them and the apt-get line to run, and installs nothing', async () => {
    if (process.getuid?.() !== 0) return; // needs a uid to switch to
    // A dpkg-query that knows no package: every one is missing.
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, 'dpkg-query'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    fs.chmodSync(dir, 0o755);
    const r = await run('/bin/bash', ['scripts/test-peers.sh'], { uid: 1000, env: { PATH: `${bin}:${process.env.PATH}`, HOME: dir } });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^test peers: missing postfix swaks .* openssl prometheus chromium; installing them needs root \(apt-get\)\. Run:$/m);
    expect(r.stderr).toMatch(/^ {2}sudo apt-get update && sudo apt-get install -y postfix swaks /m);
    expect(r.stdout).toBe('');
  });
});
