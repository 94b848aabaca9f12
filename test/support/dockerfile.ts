/**
 * Reads the Dockerfile's final stage, so tests check the image as written and the benchmarks
 * run the relay the way the image runs it (the same Node flags).
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

export interface FinalStage {
  from: string;
  workdir: string;
  user: string;
  entrypoint: string[];
  copies: { from: string; to: string }[];
}

/** The last stage of a Dockerfile: its base, user, entrypoint and what it copies from the build stage. */
export function finalStage(dockerfile: string): FinalStage {
  const lines = dockerfile.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const last = lines.map((l, i) => (l.startsWith('FROM ') ? i : -1)).filter((i) => i >= 0).pop()!;
  const stage = lines.slice(last);
  const value = (keyword: string) => stage.filter((l) => l.startsWith(`${keyword} `)).map((l) => l.slice(keyword.length + 1).trim()).pop() ?? '';
  const copies = stage
    .filter((l) => l.startsWith('COPY --from='))
    .map((l) => {
      const [, , from, to] = l.split(/\s+/);
      return { from: from!, to: to! };
    });
  return { from: value('FROM'), workdir: value('WORKDIR'), user: value('USER'), entrypoint: JSON.parse(value('ENTRYPOINT') || '[]') as string[], copies };
}

/** The project's Dockerfile, parsed. */
export function projectImage(): FinalStage {
  return finalStage(fs.readFileSync(path.join(projectRoot(), 'Dockerfile'), 'utf8'));
}

/** The options the image's entrypoint gives node (those between `node` and the script). */
export function imageNodeFlags(stage: FinalStage = projectImage()): string[] {
  return stage.entrypoint.slice(1).filter((a) => a.startsWith('-'));
}

/** The script the image's entrypoint runs, as a path inside the image. */
export function imageScript(stage: FinalStage = projectImage()): string {
  return stage.entrypoint.slice(1).find((a) => !a.startsWith('-'))!;
}
