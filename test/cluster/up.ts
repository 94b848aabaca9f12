/**
 * A real control plane in the foreground, for a developer's kubectl, helm or operator:
 *   npm run build && node dist/test/cluster/up.js [KUBECONFIG_FILE]
 * prints the kubeconfig's path (admin in system:masters) and runs until Ctrl-C.
 */
import fs from 'node:fs';
import path from 'node:path';
import { kubeBinaries, kubeconfigYaml, startRealCluster } from './cluster.js';

const found = kubeBinaries();
if (!found.binaries) {
  process.stderr.write(`${found.missing}\n`);
  process.exit(1);
}
const cluster = await startRealCluster(found.binaries);
const file = path.resolve(process.argv[2] ?? path.join(cluster.dir, 'admin.kubeconfig'));
fs.writeFileSync(file, kubeconfigYaml(cluster.server, cluster.caFile, cluster.adminToken, 'admin'), { mode: 0o600 });
process.stdout.write(`kube-apiserver ${cluster.version} at ${cluster.server}, ready in ${cluster.startSeconds.toFixed(1)} s\nexport KUBECONFIG=${file}\n`);
const stop = () => void cluster.stop().then(() => process.exit(0));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
