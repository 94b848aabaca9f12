/**
 * Global setup of `npm run test:cluster`: one real control plane for every file of the run
 * (each file works in namespaces of its own). Without the binaries the run fails in CI and,
 * elsewhere, every suite skips with a line that says how to build them.
 */
import type { TestProject } from 'vitest/node';
import { kubeBinaries, startRealCluster, type ClusterAccess } from './cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The cluster to test against, or the reason there is none. */
    cluster: { access?: ClusterAccess; missing?: string };
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const found = kubeBinaries();
  if (!found.binaries) {
    if (process.env.CI) throw new Error(`test:cluster: ${found.missing}; CI must run every real-cluster test`);
    process.stderr.write(`\n!!! SKIPPING the real-cluster suites: ${found.missing}\n\n`);
    project.provide('cluster', { missing: found.missing! });
    return undefined;
  }
  const cluster = await startRealCluster(found.binaries);
  process.stdout.write(`\nreal control plane: kube-apiserver ${cluster.version} (etcd, kube-controller-manager) at ${cluster.server}, ready in ${cluster.startSeconds.toFixed(1)} s\n\n`);
  project.provide('cluster', { access: { server: cluster.server, caFile: cluster.caFile, adminToken: cluster.adminToken, version: cluster.version, startSeconds: cluster.startSeconds } });
  return async () => {
    await cluster.stop();
  };
}
