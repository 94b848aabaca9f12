import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'vitest';

// sbin directories are often missing from a non-root PATH, yet Postfix and dnsmasq live there.
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

// Which Debian package provides a binary, for the install hint.
const PACKAGE_OF: Record<string, string> = {
  postfix: 'postfix',
  postconf: 'postfix',
  postqueue: 'postfix',
  postsuper: 'postfix',
  'smtp-sink': 'postfix',
  'smtp-source': 'postfix',
  swaks: 'swaks libio-socket-ssl-perl libnet-ssleay-perl libauthen-sasl-perl',
  dnsmasq: 'dnsmasq-base',
  dig: 'bind9-dnsutils',
  openssl: 'openssl',
  script: 'bsdutils',
  prometheus: 'prometheus',
  promtool: 'prometheus',
};

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Absolute path of a binary (absolute paths are checked as given), or undefined. */
export function findBinary(name: string): string | undefined {
  if (path.isAbsolute(name)) return executable(name) ? name : undefined;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (executable(candidate)) return candidate;
  }
  return undefined;
}

/** Like findBinary, but throws a message that says what to install. */
export function binary(name: string): string {
  const found = findBinary(name);
  if (!found) throw new Error(`${name} not found: ${installHint([name])}`);
  return found;
}

export function installHint(binaries: string[]): string {
  const packages = new Set(binaries.map((b) => PACKAGE_OF[path.basename(b)] ?? path.basename(b)));
  return `sudo apt-get install -y ${[...packages].join(' ')}`;
}

export interface PeerCheckOptions {
  /** The peer only works as root (a private Postfix instance does). */
  root?: boolean;
}

export function requirePeer(
  name: string,
  binaries: string[],
  opts: PeerCheckOptions = {},
): { available: boolean; reason?: string } {
  const missing = binaries.filter((b) => !findBinary(b));
  if (missing.length > 0) {
    return { available: false, reason: `peer ${name}: missing ${missing.join(', ')} (install: ${installHint(missing)})` };
  }
  if (opts.root && process.getuid?.() !== 0) {
    return { available: false, reason: `peer ${name}: needs root (run the tests as root, as CI does)` };
  }
  return { available: true };
}

export type PeerDecision = { action: 'run' } | { action: 'fail' | 'skip'; message: string };

/** In CI a missing peer is a failure (every real-peer test must run); elsewhere a skip. */
export function decidePeer(
  name: string,
  binaries: string[],
  opts: PeerCheckOptions = {},
  env: NodeJS.ProcessEnv = process.env,
): PeerDecision {
  const check = requirePeer(name, binaries, opts);
  if (check.available) return { action: 'run' };
  const reason = check.reason ?? `peer ${name} unavailable`;
  if (env.CI) return { action: 'fail', message: `${reason}; CI must run every real-peer test` };
  return { action: 'skip', message: `!!! SKIPPING real-peer tests: ${reason}` };
}

/**
 * `describe` for a suite that needs real programs: runs it when they exist, fails it in CI
 * when they do not, and otherwise skips it with a loud one-line warning on stderr.
 */
export function describePeer(name: string, binaries: string[], fn: () => void, opts: PeerCheckOptions = {}): void {
  const decision = decidePeer(name, binaries, opts);
  if (decision.action === 'run') {
    describe(name, fn);
  } else if (decision.action === 'fail') {
    describe(name, () => {
      it(`needs peer ${name}`, () => {
        throw new Error(decision.message);
      });
    });
  } else {
    process.stderr.write(`${decision.message}\n`);
    describe.skip(name, fn);
  }
}
