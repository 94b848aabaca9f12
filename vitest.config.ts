import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['relay/**/*.test.ts', 'operator/**/*.test.ts', 'cli/**/*.test.ts', 'test/**/*.test.ts'],
    // The real control plane has its own run: npm run test:cluster (vitest.cluster.config.ts).
    exclude: ['test/cluster/**', '**/node_modules/**'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Suites that start real peers (Postfix, dnsmasq) bind fixed high ports: keep files apart.
    fileParallelism: false,
    reporters: ['default'],
  },
});
