import fs from 'node:fs';
import path from 'node:path';

/** The package's version, from its package.json (found upward: this runs from the sources or dist/). */
export function packageVersion(): string {
  for (let dir = import.meta.dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return 'latest';
}
