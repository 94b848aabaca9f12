/**
 * `npm start` as a newcomer runs it and stops it: by the PID they see (npm's), with SIGTERM or
 * Ctrl-C. npm forwards both signals to the script's process; the script must hand them to the
 * relay (the shell that runs it passes nothing on), so the relay drains and nothing outlives npm.
 *
 * It runs the package's own start script, build included, in a copy of the package (sources
 * linked, its own dist/ and .mailfleet/), so it neither rebuilds the dist/ other tests use nor
 * touches the working tree's development state.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '..');

/** Every process below `pid`, from /proc (children first found, then theirs). */
function descendants(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Field 4 of /proc/PID/stat is the parent; the command name (field 2) may hold spaces, so read after its ')'.
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const [child, parent] of parents) {
      if (parent !== p) continue;
      found.push(child);
      walk(child);
    }
  };
  walk(pid);
  return found;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    // A zombie still answers kill 0 until its parent reaps it: it no longer runs.
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

describe('npm start', () => {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-npm-start-'));
  const leftovers = new Set<number>();
  // Only when a test failed: the processes it started that outlived npm, by PID.
  const killLeftovers = () => {
    for (const pid of leftovers) if (alive(pid)) process.kill(pid, 'SIGKILL');
    leftovers.clear();
  };
  afterEach(killLeftovers);
  afterAll(() => fs.rmSync(copy, { recursive: true, force: true }));

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`stops the relay, drained, when npm's own PID gets ${signal}`, async () => {
      if (!fs.existsSync(path.join(copy, 'package.json'))) {
        for (const f of ['package.json', 'tsconfig.json', 'tsconfig.build.json']) fs.copyFileSync(path.join(ROOT, f), path.join(copy, f));
        for (const d of ['cli', 'relay', 'operator', 'bench', 'test', 'node_modules']) fs.symlinkSync(path.join(ROOT, d), path.join(copy, d));
      }
      // npm as a user runs it: its own process group would be killed as one by a terminal; here only npm's PID is signalled.
      const npm = spawn('npm', ['start'], { cwd: copy, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
      npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
      leftovers.add(npm.pid!);
      const exited = new Promise<number | string>((resolve) => npm.on('close', (code, sig) => resolve(code ?? sig ?? -1)));

      const deadline = Date.now() + 120_000; // the build runs first, on a shared machine
      while (!/"event":"listening".*"port":2587/.test(out)) {
        if (Date.now() > deadline || npm.exitCode !== null) throw new Error(`npm start did not come up; output:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const tree = descendants(npm.pid!);
      for (const pid of tree) leftovers.add(pid);
      expect(tree.length, 'the relay runs below npm').toBeGreaterThan(0);

      process.kill(npm.pid!, signal);
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('npm still running after 30 s'), 30_000))]);
      expect(code, out).not.toBe('npm still running after 30 s');
      expect(out).toMatch(/"event":"draining"/);
      expect(out).toMatch(/"event":"stopped"/);
      // Bounded: a relay that did not get the signal would run on for good.
      const gone = Date.now() + 20_000;
      while (tree.some(alive) && Date.now() < gone) await new Promise((r) => setTimeout(r, 100));
      expect(tree.filter(alive), `processes left behind by npm start (output:\n${out})`).toEqual([]);
    });
  }
});
