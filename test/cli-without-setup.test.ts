/**
 * The first thing a newcomer may type, without a config or a cluster: the command says what
 * is missing and what to pass, with an error code and no stack trace, and exits 2. (The
 * container image shows the same lines; test/image runs them there.)
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI } from './support/process.js';

function mailfleet(args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; uid?: number }): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: opts.env, uid: opts.uid, gid: opts.uid, timeout: 30_000 }, (err, _stdout, stderr) =>
      // A numeric code is the exit status; a string one (EACCES: this node is not executable as uid 1000) is a failure to start.
      resolve(typeof err?.code === 'number' || !err ? { code: err ? (err.code as number) : 0, stderr } : { code: -1, stderr: `could not run ${process.execPath}: ${err.message}\n${stderr}` }),
    );
  });
}

describe('mailfleet without a config or a cluster', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-nosetup-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('relay: where its development defaults cannot be written, asks for --config', async () => {
    // A working directory its user cannot write, as /app is in the image (root ignores modes: run as uid 1000 then).
    const readOnly = path.join(dir, 'app');
    fs.mkdirSync(readOnly);
    fs.chmodSync(dir, 0o755);
    const root = process.getuid?.() === 0;
    fs.chmodSync(readOnly, root ? 0o755 : 0o555);
    const r = await mailfleet(['relay'], { cwd: readOnly, env: { PATH: process.env.PATH, HOME: dir }, uid: root ? 1000 : undefined });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(`MF_CONFIG_REQUIRED: no --config given, and the development defaults cannot keep their files in ${readOnly}/.mailfleet: ${readOnly} is not writable`);
    expect(r.stderr).toMatch(/hint: run `mailfleet relay --config FILE`/);
    expect(r.stderr, 'no stack trace').not.toMatch(/^\s+at /m);
    expect(fs.existsSync(path.join(readOnly, '.mailfleet'))).toBe(false);
  });

  it('operator: without KUBECONFIG, ~/.kube/config or a service account, names all three', async () => {
    const r = await mailfleet(['operator'], { cwd: dir, env: { PATH: process.env.PATH, HOME: dir } });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(`MF_NO_CLUSTER: no Kubernetes cluster to talk to: KUBECONFIG is not set, ${dir}/.kube/config does not exist, and there is no service account token`);
    expect(r.stderr, 'no stack trace').not.toMatch(/^\s+at /m);
  });

  it('operator: a KUBECONFIG that does not exist, or names no cluster, is said so', async () => {
    const missing = await mailfleet(['operator'], { cwd: dir, env: { PATH: process.env.PATH, HOME: dir, KUBECONFIG: path.join(dir, 'nope') } });
    expect(missing.code, missing.stderr).toBe(2);
    expect(missing.stderr).toMatch(`MF_KUBECONFIG_INVALID: KUBECONFIG names ${dir}/nope, which does not exist`);
    const empty = path.join(dir, 'empty-kubeconfig');
    fs.writeFileSync(empty, 'apiVersion: v1\nkind: Config\n');
    const noCluster = await mailfleet(['operator'], { cwd: dir, env: { PATH: process.env.PATH, HOME: dir, KUBECONFIG: empty } });
    expect(noCluster.code, noCluster.stderr).toBe(2);
    expect(noCluster.stderr).toMatch(`MF_KUBECONFIG_INVALID: ${empty} has no current context with a cluster`);
  });
});
