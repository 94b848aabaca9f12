/**
 * The container image, as far as it can be checked without a container engine (none runs on
 * these machines, so `docker build` cannot). The final stage's filesystem is assembled from the
 * Dockerfile's own COPY lines: package.json, production dependencies only (`npm ci
 * --omit=dev`, what the build stage's `npm prune --omit=dev` leaves), the built dist/
 * directories it names, and a node binary where the base image has one. Everything belongs to
 * root, so for the image's user it is as read-only as a read-only root filesystem. Then every
 * subcommand runs from it as that user, and the relay accepts and delivers a message with
 * only its spool (the image's volume) and its outbox writable.
 *
 * It fails when the Dockerfile leaves out something a subcommand loads, when runtime code
 * imports a devDependency, or when the relay writes outside its spool.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describePeer } from './peers/availability.js';
import { freePort, waitForPort } from './peers/ports.js';
import { run } from './peers/proc.js';
import { finalStage, imageNodeFlags, imageScript } from './support/dockerfile.js';
import { waitFor } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const ROOT = path.resolve(import.meta.dirname, '..');

describePeer(
  'container image (final stage, without a container engine)',
  ['npm'],
  () => {
    const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    const stage = finalStage(dockerfile);
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-image-'));
    const rootfs = path.join(base, 'rootfs');
    const app = path.join(rootfs, stage.workdir);
    const node = path.join(rootfs, 'usr/local/bin/node');
    const uid = Number(stage.user.split(':')[0]);
    const gid = Number(stage.user.split(':')[1] ?? stage.user.split(':')[0]);
    // What the image's volume and a writable outbox would be.
    const volume = path.join(base, 'volume');

    /** Runs the image's entrypoint with these arguments, as the image's user. */
    function image(args: string[], opts: { timeoutMs?: number } = {}): Promise<{ code: number | null; out: string }> {
      expect(stage.entrypoint[0]).toBe('node');
      const child = spawn(node, [...imageNodeFlags(stage), path.join(rootfs, imageScript(stage)), ...args], { cwd: app, uid, gid, env: { PATH: '/usr/local/bin:/usr/bin:/bin', NODE_ENV: 'production', HOME: '/nonexistent' } });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
      return new Promise((resolve) =>
        child.on('exit', (code) => {
          clearTimeout(timer);
          resolve({ code, out });
        }),
      );
    }

    beforeAll(async () => {
      fs.mkdirSync(app, { recursive: true });
      fs.mkdirSync(path.dirname(node), { recursive: true });
      // The base image's node; this suite runs on the machine's Node and, in CI, on the image's LTS too.
      fs.copyFileSync(process.execPath, node);
      fs.chmodSync(node, 0o755);
      for (const { from, to } of stage.copies) {
        const source = from.replace(/^\/src\//, '');
        // "COPY a ./" puts a inside the directory.
        const target = to.endsWith('/') ? path.join(app, to, path.basename(source)) : path.join(app, to);
        if (source === 'node_modules') {
          // Production dependencies only, from the lock file, as the build stage leaves them.
          const staging = path.join(base, 'deps');
          fs.mkdirSync(staging);
          for (const f of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(ROOT, f), path.join(staging, f));
          const ci = await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: staging, timeoutMs: 180_000 });
          expect(ci.code, ci.stderr).toBe(0);
          fs.renameSync(path.join(staging, 'node_modules'), target);
        } else {
          // dist/ is what the build stage's `npm run build` makes; the suite built it already.
          fs.cpSync(path.join(ROOT, source), target, { recursive: true });
        }
      }
      // Readable and traversable for everyone, writable by root only.
      for (let dir = rootfs; dir !== path.dirname(base); dir = path.dirname(dir)) fs.chmodSync(dir, 0o755);
      fs.mkdirSync(volume, { mode: 0o755 });
      fs.chownSync(volume, uid, gid);
    }, 240_000);

    afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

    it('ships the current LTS, runs as a non-root user, and holds only what its COPY lines name', () => {
      expect(stage.from).toMatch(/^node:24[-.]/);
      expect(uid).toBeGreaterThan(0);
      expect(stage.copies.map((c) => c.to).sort()).toEqual(['./', './dist/cli', './dist/operator', './dist/relay', './node_modules']);
      // No development tool made it in.
      for (const dev of ['vitest', 'typescript', 'eslint', 'testcontainers', 'kubernetes-models']) expect(fs.existsSync(path.join(app, 'node_modules', dev)), dev).toBe(false);
    });

    it('runs every subcommand from a read-only filesystem as the image user', async () => {
      const help = await image(['--help']);
      expect(help.code, help.out).toBe(0);
      const commands = [...help.out.matchAll(/^ {2}([a-z-]+) /gm)].map((m) => m[1]!);
      expect(commands).toEqual(['relay', 'operator', 'send', 'hash-password', 'records', 'suppressions', 'render']);
      for (const command of commands) {
        const r = await image([command, '--help']);
        expect(r.code, `${command} --help: ${r.out}`).toBe(0);
        expect(r.out).toMatch(new RegExp(`usage: (echo -n PASSWORD \\| )?mailfleet ${command}`));
      }
      const hashed = spawn(node, [...imageNodeFlags(stage), path.join(rootfs, imageScript(stage)), 'hash-password', '--user', 'app'], { cwd: app, uid, gid });
      hashed.stdin.end('secret');
      const hash = await new Promise<string>((resolve) => {
        let out = '';
        hashed.stdout.on('data', (d: Buffer) => (out += d.toString()));
        hashed.on('exit', () => resolve(out));
      });
      expect(hash).toMatch(/^app:\$scrypt\$/);
      fs.copyFileSync(path.join(ROOT, 'examples/mailrelay.yaml'), path.join(base, 'mailrelay.yaml'));
      fs.chmodSync(path.join(base, 'mailrelay.yaml'), 0o644);
      const rendered = await image(['render', '-f', path.join(base, 'mailrelay.yaml')]);
      expect(rendered.code, rendered.out).toBe(0);
      expect(rendered.out).toMatch(/^kind: Deployment$/m);
    });

    it('relays a message with only its spool volume writable', async () => {
      const port = await freePort();
      const outbox = path.join(volume, 'outbox');
      const config = path.join(base, 'relay.yaml');
      fs.writeFileSync(
        config,
        JSON.stringify({
          hostname: 'relay.image.test',
          spool: { dir: path.join(volume, 'spool'), minFreeBytes: 0 },
          listeners: [{ name: 'in', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
          delivery: { route: { type: 'file', dir: outbox } },
          http: { address: '127.0.0.1', port: await freePort() },
        }),
      );
      fs.chmodSync(config, 0o644);
      const relay = image(['relay', '--config', config], { timeoutMs: 60_000 });
      await waitForPort(port, { what: 'the relay from the image' });
      expect(await submit(port, 'app@example.test', ['someone@dest.test'], 'Subject: from the image\r\n\r\nbody\r\n')).toMatch(/^250/);
      await waitFor(() => fs.existsSync(outbox) && fs.readdirSync(outbox).some((f) => f.endsWith('.eml')), 'the message in the outbox');
      const pid = Number(fs.readdirSync('/proc').find((p) => /^\d+$/.test(p) && readCmdline(p).includes(config)));
      process.kill(pid, 'SIGTERM');
      const { code, out } = await relay;
      expect(code, out).toBe(0);
      // Nothing but the volume changed: the relay could not have written elsewhere, and did not try.
      expect(out).not.toMatch(/EACCES|EROFS/);
    });
  },
  { root: true },
);

function readCmdline(pid: string): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}
