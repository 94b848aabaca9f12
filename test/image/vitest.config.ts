import path from 'node:path';
import { defineConfig } from 'vitest/config';

/**
 * `npm run test:image`: the container image in a real Docker engine. Its files end in .e2e.ts,
 * so the main suite (test/**\/*.test.ts) leaves them out: they need root, dockerd and
 * debootstrap and take minutes, and `npm test` runs twice in CI (Node 20 and the image's LTS);
 * CI runs this suite once, through test/image/ci.sh.
 */
export default defineConfig({
  test: {
    root: path.resolve(import.meta.dirname, '../..'),
    include: ['test/image/**/*.e2e.ts'],
    testTimeout: 120_000,
    hookTimeout: 16 * 60_000,
    fileParallelism: false,
    reporters: ['default'],
  },
});
