import { spawn, execFile, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

// Cleanups of the peers still running in this process. If a test forgets stop(), or the
// worker ends early, these kill them by PID so no peer outlives the run. Vitest ends its
// fork workers with SIGTERM, which skips 'exit' handlers: catch it, clean up, re-raise.
const cleanups = new Map<number | string, () => void>();
let hooked = false;

function runCleanups(): void {
  for (const cleanup of cleanups.values()) cleanup();
  cleanups.clear();
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', runCleanups);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(sig, () => {
      runCleanups();
      // Default action (terminate) unless someone else handles the signal.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

/** Registers a synchronous last-resort cleanup for `key` (a PID or a path). */
export function onProcessExit(key: number | string, cleanup: () => void): void {
  hookExit();
  cleanups.set(key, cleanup);
}

export function forgetOnProcessExit(key: number | string): void {
  cleanups.delete(key);
}

/**
 * Whether a process that is not our child still runs. A zombie counts as gone: in containers
 * PID 1 may reap orphans late, and a zombie holds no sockets or locks.
 */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the parenthesised command name, which may itself contain ')'.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/** SIGTERM by PID, poll until gone, SIGKILL (to the process group too) after `graceMs`. */
export async function terminate(pid: number, graceMs = 5000): Promise<void> {
  signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  if (isAlive(pid)) {
    signal(-pid, 'SIGKILL');
    signal(pid, 'SIGKILL');
  }
}

export interface Peer {
  readonly pid: number;
  readonly child: ChildProcess;
  /** stdout and stderr so far, for error messages. */
  output(): string;
  running(): boolean;
  /** SIGTERM by PID, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Spawns a long-running peer whose stdout/stderr are collected and whose PID is tracked. */
export function spawnPeer(command: string, args: string[], opts: SpawnOptions = {}): Peer {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  if (child.pid === undefined) throw new Error(`cannot start ${command}`);
  const pid = child.pid;
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', (err) => (out += `\nspawn error: ${err.message}`));
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  onProcessExit(pid, () => signal(pid, 'SIGKILL'));
  return {
    pid,
    child,
    output: () => out,
    running,
    async stop(graceMs = 5000) {
      if (running()) {
        signal(pid, 'SIGTERM');
        const timer = setTimeout(() => signal(pid, 'SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      forgetOnProcessExit(pid);
    },
  };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Runs a command to completion; a non-zero exit is a result, not an exception. */
export function run(command: string, args: string[], opts: { timeoutMs?: number; input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', cwd: opts.cwd, env: opts.env },
      (err, stdout, stderr) => {
        const durationMs = performance.now() - started;
        if (err && typeof err.code !== 'number') {
          // Not started, or killed by the timeout: no meaningful exit code.
          if (err.killed || err.signal) resolve({ code: -1, stdout, stderr: `${stderr}\n${err.message}`, durationMs });
          else reject(err);
          return;
        }
        resolve({ code: err && typeof err.code === 'number' ? err.code : 0, stdout, stderr, durationMs });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}
