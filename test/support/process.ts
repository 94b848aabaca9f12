/** Runs `mailfleet` from dist/ as a child process, as users and Kubernetes run it: with the image's Node flags. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { imageEnv, imageNodeFlags } from './dockerfile.js';

/** dist/cli/main.js at the package root, whether this file runs from the sources or from dist/. */
export const CLI = (() => {
  for (let dir = import.meta.dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'dist/cli/main.js');
  }
  throw new Error('no package.json above test/support');
})();

export interface RelayProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

export function spawnMailfleet(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): RelayProcess {
  // The image's flags and environment (a smaller young generation, one malloc arena): memory figures in tests are what ships.
  const child = spawn(process.execPath, [...imageNodeFlags(), CLI, ...args], { cwd: opts.cwd, env: { ...process.env, ...imageEnv(), ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners: (() => void)[] = [];
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  // 'close', not 'exit': the output read after this has everything the process wrote.
  const exited = new Promise<number | string>((resolve) => child.on('close', (code, signal) => resolve(code ?? signal ?? -1)));
  return {
    child,
    output: () => out,
    exited,
    waitForLog(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line matching ${pattern} within ${timeoutMs} ms; output:\n${out}`)), timeoutMs);
        const check = () => {
          if (pattern.test(out)) {
            clearTimeout(timer);
            resolve();
          }
        };
        listeners.push(check);
        check();
        void exited.then(() => {
          check();
          setTimeout(() => reject(new Error(`mailfleet exited before logging ${pattern}; output:\n${out}`)), 50);
        });
      });
    },
  };
}
