/**
 * Reads the Dockerfile's final stage, so the benchmarks run the relay the way the image runs it
 * (the same Node flags and environment). test/image checks that the built image's entrypoint
 * and environment are what this reads.
 */
import fs from 'node:fs';
import path from 'node:path';

/** The project root: the nearest directory up with a Dockerfile (this runs from test/ and from dist/test/). */
function projectRoot(): string {
  for (let dir = import.meta.dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'Dockerfile'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no Dockerfile above ${import.meta.dirname}`);
  }
}

/** The instruction lines of a Dockerfile's last stage (comments and blank lines dropped). */
function finalStage(dockerfile: string): string[] {
  const lines = dockerfile.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const last = lines.map((l, i) => (l.startsWith('FROM ') ? i : -1)).filter((i) => i >= 0).pop()!;
  return lines.slice(last);
}

/** The ENTRYPOINT of a Dockerfile's last stage (exec form). */
export function finalEntrypoint(dockerfile: string): string[] {
  const entrypoint = finalStage(dockerfile).filter((l) => l.startsWith('ENTRYPOINT ')).pop();
  return entrypoint ? (JSON.parse(entrypoint.slice('ENTRYPOINT '.length)) as string[]) : [];
}

/** The variables a Dockerfile's last stage sets with ENV (the `KEY=value` form, unquoted values only). */
export function finalEnv(dockerfile: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of finalStage(dockerfile).filter((l) => l.startsWith('ENV '))) {
    for (const pair of line.slice('ENV '.length).trim().split(/\s+/)) {
      const eq = pair.indexOf('=');
      if (eq <= 0 || /["'\\$]/.test(pair)) throw new Error(`Dockerfile: cannot read "${line}": write ENV as KEY=value pairs without quotes or variables`);
      env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}

/** The image's entrypoint: this project's, or another checkout's (`root`: a benchmark's baseline runs with its own flags). */
export function imageEntrypoint(root = projectRoot()): string[] {
  return finalEntrypoint(fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8'));
}

/** The environment the image sets: this project's, or another checkout's (a baseline runs with its own). */
export function imageEnv(root = projectRoot()): Record<string, string> {
  return finalEnv(fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8'));
}

/** The options the image's entrypoint gives node (those between `node` and the script). */
export function imageNodeFlags(entrypoint: string[] = imageEntrypoint()): string[] {
  return entrypoint.slice(1).filter((a) => a.startsWith('-'));
}
