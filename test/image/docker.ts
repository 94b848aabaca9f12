/**
 * The image tests' way to the Docker engine: our own engine (test/image/lib.sh says where), the
 * docker client, and the decision to run, skip or fail the suite, as test/peers/availability.ts
 * decides for the other real peers.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'vitest';
import { findBinary } from '../peers/availability.js';
import { onProcessExit, run, type RunResult } from '../peers/proc.js';

export const IMAGE_DIR = import.meta.dirname;
export const ROOT = path.resolve(IMAGE_DIR, '../..');

/** A setting of lib.sh, so the scripts and the tests talk to the same engine. */
function libSetting(name: string): string {
  return execFileSync('bash', ['-c', `source "${IMAGE_DIR}/lib.sh" && printf %s "$${name}"`], { encoding: 'utf8' });
}

export const DOCKER_HOST = libSetting('DOCKER_HOST');

/** The legacy builder: Debian's docker.io has no buildx, and it builds the same with either client. */
export const dockerEnv = (): NodeJS.ProcessEnv => ({ ...process.env, DOCKER_HOST, DOCKER_BUILDKIT: '0' });

export function docker(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return run('docker', args, { ...opts, env: dockerEnv() });
}

/** Runs one of the scripts here (engine.sh, base-image.sh) with the tests' environment. */
export function script(name: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return run('bash', [path.join(IMAGE_DIR, name), ...args], { env: dockerEnv(), timeoutMs, cwd: ROOT });
}

/** Whether the engine works: `docker info` answers (a socket file proves nothing). */
export function engineAnswers(): boolean {
  try {
    execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { env: dockerEnv(), timeout: 20_000, stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Removes these containers and volumes when the test process ends, should a test not get to it. */
export function removeOnExit(kind: 'container' | 'volume', name: string): void {
  onProcessExit(`docker-${kind}-${name}`, () => {
    try {
      execFileSync('docker', kind === 'container' ? ['rm', '-f', '-v', name] : ['volume', 'rm', '-f', name], { env: dockerEnv(), stdio: 'ignore', timeout: 30_000 });
    } catch {
      // Already gone, or the engine is.
    }
  });
}

export type ImageDecision = { action: 'run'; engineRunning: boolean } | { action: 'fail' | 'skip'; message: string };

/**
 * What the suite needs: the docker client, an engine that answers or dockerd and root to start
 * ours, debootstrap for the base images, openssl for the relay's certificate.
 */
export function decideImage(env: NodeJS.ProcessEnv = process.env): ImageDecision {
  const missing: string[] = [];
  const packages = new Set<string>();
  if (!findBinary('docker')) {
    missing.push('docker');
    packages.add('docker.io');
  }
  const engineRunning = missing.length === 0 && engineAnswers();
  if (!engineRunning) {
    if (!findBinary('dockerd')) {
      missing.push(`dockerd (no engine answers at ${DOCKER_HOST})`);
      packages.add('docker.io');
    } else if (process.getuid?.() !== 0) {
      missing.push(`root, to start dockerd (no engine answers at ${DOCKER_HOST})`);
    }
  }
  for (const [binary, pkg] of [['debootstrap', 'debootstrap'], ['openssl', 'openssl']] as const) {
    if (!findBinary(binary)) {
      missing.push(binary);
      packages.add(pkg);
    }
  }
  if (missing.length === 0) return { action: 'run', engineRunning };
  const install = packages.size ? ` (install: sudo apt-get install -y ${[...packages].join(' ')}; test/image/ci.sh does it all)` : '';
  const reason = `peer docker engine: missing ${missing.join(', ')}${install}`;
  if (env.CI) return { action: 'fail', message: `${reason}; CI must run the image tests` };
  return { action: 'skip', message: `!!! SKIPPING real-peer tests: ${reason}` };
}

/** `describe` for the image suite: runs it, fails it in CI, or skips it with a loud line. */
export function describeImage(name: string, fn: (engineRunning: boolean) => void): void {
  const decision = decideImage();
  if (decision.action === 'run') {
    describe(name, () => fn(decision.engineRunning));
  } else if (decision.action === 'fail') {
    describe(name, () => {
      it('needs a docker engine, debootstrap and openssl', () => {
        throw new Error(decision.message);
      });
    });
  } else {
    process.stderr.write(`${decision.message}\n`);
    describe.skip(name, () => fn(false));
  }
}

/** One line for the report: how long each step took, how big the image is. */
export function report(line: string): void {
  process.stderr.write(`[image] ${line}\n`);
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Output of a command for an assertion message. */
export const shown = (r: { code: number; stdout: string; stderr: string }) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;
