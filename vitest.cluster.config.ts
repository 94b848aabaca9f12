import { defineConfig } from 'vitest/config';

// `npm run test:cluster`: the operator against a real kube-apiserver (test/cluster/cluster.ts).
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts', 'test/cluster/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // One control plane for the run; files share it (each in namespaces of its own) one at a time.
    fileParallelism: false,
    reporters: ['default'],
  },
});
