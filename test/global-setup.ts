import { execFileSync } from 'node:child_process';

/**
 * Tests that run `mailfleet` as a process use dist/: build it once before the suites start.
 * MF_SKIP_BUILD=1 skips it for a quick run of in-process tests while other files are mid-edit.
 */
export default function setup(): void {
  if (process.env.MF_SKIP_BUILD === '1') return;
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
}
