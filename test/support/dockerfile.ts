/**
 * Reads the Dockerfile's final stage, so the benchmarks run the relay the way the image runs it
 * (the same Node flags). test/image checks that the built image's entrypoint is what this reads.
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

/** The ENTRYPOINT of a Dockerfile's last stage (exec form). */
export function finalEntrypoint(dockerfile: string): string[] {
  const lines = dockerfile.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const last = lines.map((l, i) => (l.startsWith('FROM ') ? i : -1)).filter((i) => i >= 0).pop()!;
  const entrypoint = lines.slice(last).filter((l) => l.startsWith('ENTRYPOINT ')).pop();
  return entrypoint ? (JSON.parse(entrypoint.slice('ENTRYPOINT '.length)) as string[]) : [];
}

/** The image's entrypoint: this project's, or another checkout's (`root`: a benchmark's baseline runs with its own flags). */
export function imageEntrypoint(root = projectRoot()): string[] {
  return finalEntrypoint(fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8'));
}

/** The options the image's entrypoint gives node (those between `node` and the script). */
export function imageNodeFlags(entrypoint: string[] = imageEntrypoint()): string[] {
  return entrypoint.slice(1).filter((a) => a.startsWith('-'));
}
