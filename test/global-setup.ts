import { execFileSync } from 'node:child_process';

/** Tests that run `mailfleet` as a process use dist/: build it once before the suites start. */
export default function setup(): void {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
