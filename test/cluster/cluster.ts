/**
 * A real Kubernetes control plane on loopback for `npm run test:cluster`: etcd (Debian's
 * etcd-server), kube-apiserver and kube-controller-manager v1.20.2 built from Debian's own
 * source package by test/cluster/build-kube.sh. The API server serves TLS with a local CA,
 * authenticates bearer tokens (an admin in system:masters, the controller manager, and
 * service account tokens it signs itself through TokenRequest) and authorizes with RBAC, so
 * the operator's own ServiceAccount and the chart's RBAC are what a request is judged by.
 * The controller manager runs the garbage collector, namespace, Deployment, ReplicaSet and
 * service-account controllers. No scheduler or kubelet: a pod stays Pending unless a test's
 * kubelet stand-in runs it (test/cluster/kubelet.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import https from 'node:https';
import { findBinary } from '../peers/availability.js';
import { freePort } from '../peers/ports.js';
import { run, spawnPeer, type Peer } from '../peers/proc.js';

export const KUBE_VERSION = 'v1.20.2';

/** Where build-kube.sh leaves the binaries (MF_KUBE_HOME, or ~/.cache/mailfleet/kube-v1.20.2). */
export function kubeHome(): string {
  return process.env.MF_KUBE_HOME ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'mailfleet', `kube-${KUBE_VERSION}`);
}

export interface KubeBinaries {
  apiserver: string;
  controllerManager: string;
  etcd: string;
}

/** The three binaries, or why they are missing and how to get them. */
export function kubeBinaries(): { binaries?: KubeBinaries; missing?: string } {
  const bin = path.join(kubeHome(), 'bin');
  const apiserver = path.join(bin, 'kube-apiserver');
  const controllerManager = path.join(bin, 'kube-controller-manager');
  const etcd = findBinary('etcd');
  const missing = [fs.existsSync(apiserver) ? '' : apiserver, fs.existsSync(controllerManager) ? '' : controllerManager, etcd ? '' : 'etcd (apt-get install etcd-server)'].filter(Boolean);
  if (missing.length) return { missing: `missing ${missing.join(', ')}: run test/cluster/build-kube.sh (as root it installs Debian's golang-1.19-go and etcd-server, then builds v1.20.2 from Debian's source package, ~5 min)` };
  return { binaries: { apiserver, controllerManager, etcd: etcd! } };
}

/** What a test process needs to reach the cluster (passed from the global setup by `provide`). */
export interface ClusterAccess {
  server: string;
  caFile: string;
  adminToken: string;
  version: string;
  /** Seconds from the first process started to the API server ready, and the controller manager's first lease. */
  startSeconds: number;
}

export interface RealCluster extends ClusterAccess {
  dir: string;
  stop(): Promise<void>;
  /** Output of the three processes, for a failure report. */
  logs(): string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const r = await run(findBinary('openssl') ?? 'openssl', args, { cwd });
  if (r.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

/** A CA, the API server's serving certificate (127.0.0.1, localhost) and the service-account signing key. */
async function makePki(dir: string): Promise<void> {
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=mailfleet-test-ca', '-keyout', 'ca.key', '-out', 'ca.crt'], dir);
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=kube-apiserver', '-keyout', 'apiserver.key', '-out', 'apiserver.csr'], dir);
  fs.writeFileSync(path.join(dir, 'apiserver.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n');
  await openssl(['x509', '-req', '-in', 'apiserver.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'apiserver.ext', '-out', 'apiserver.crt'], dir);
  await openssl(['genrsa', '-out', 'sa.key', '2048'], dir);
  await openssl(['rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
}

/** A kubeconfig for a bearer token; without a CA file (a plain-HTTP server such as the fault proxy), TLS is not verified. */
export function kubeconfigYaml(server: string, caFile: string | undefined, token: string, user = 'user'): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: real`,
    '  cluster:',
    `    server: ${server}`,
    caFile ? `    certificate-authority: ${caFile}` : '    insecure-skip-tls-verify: true',
    'users:',
    `- name: ${user}`,
    '  user:',
    `    token: ${token}`,
    'contexts:',
    `- name: real`,
    '  context:',
    '    cluster: real',
    `    user: ${user}`,
    'current-context: real',
    '',
  ].join('\n');
}

/** GET on the API server with a token; the status and the body. */
export function apiGet(access: Pick<ClusterAccess, 'server' | 'caFile'>, token: string, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(new URL(p, access.server), { ca: fs.readFileSync(access.caFile), headers: { authorization: `Bearer ${token}` }, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${p}: no answer in 5 s`)));
    req.on('error', reject);
  });
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs: number, peers: Peer[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const dead = peers.find((p) => !p.running());
    if (dead) throw new Error(`${what}: a control-plane process exited:\n${dead.output().slice(-3000)}`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
}

/** Starts etcd, kube-apiserver and kube-controller-manager on loopback; resolves once /readyz answers ok. */
export async function startRealCluster(binaries: KubeBinaries): Promise<RealCluster> {
  const started = Date.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-kube-'));
  // etcd on tmpfs: its fsyncs cost nothing there, and nothing here needs to outlive the run.
  const etcdData = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'mf-etcd-'));
  await makePki(dir);
  const adminToken = crypto.randomBytes(24).toString('hex');
  const cmToken = crypto.randomBytes(24).toString('hex');
  fs.writeFileSync(path.join(dir, 'tokens.csv'), `${adminToken},admin,admin,"system:masters"\n${cmToken},system:kube-controller-manager,kcm,"system:masters"\n`, { mode: 0o600 });

  const [etcdClient, etcdPeer, securePort] = [await freePort(), await freePort(), await freePort()];
  const server = `https://127.0.0.1:${securePort}`;
  const caFile = path.join(dir, 'ca.crt');
  const peers: Peer[] = [];
  const stop = async () => {
    for (const p of [...peers].reverse()) await p.stop(10_000);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(etcdData, { recursive: true, force: true });
  };
  try {
    const etcd = spawnPeer(binaries.etcd, [
      '--name=mf', `--data-dir=${etcdData}`,
      `--listen-client-urls=http://127.0.0.1:${etcdClient}`, `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=mf=http://127.0.0.1:${etcdPeer}`, '--log-level=warn',
    ]);
    peers.push(etcd);
    const apiserver = spawnPeer(binaries.apiserver, [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${securePort}`, '--insecure-port=0',
      `--tls-cert-file=${dir}/apiserver.crt`, `--tls-private-key-file=${dir}/apiserver.key`, `--client-ca-file=${caFile}`,
      `--token-auth-file=${dir}/tokens.csv`, '--authorization-mode=RBAC', '--anonymous-auth=false',
      '--service-account-issuer=https://kubernetes.default.svc', `--service-account-key-file=${dir}/sa.pub`, `--service-account-signing-key-file=${dir}/sa.key`,
      '--api-audiences=https://kubernetes.default.svc',
      '--service-cluster-ip-range=10.96.0.0/16', '--profiling=false', '--v=0',
    ]);
    peers.push(apiserver);
    await waitUntil('kube-apiserver /readyz', async () => (await apiGet({ server, caFile }, adminToken, '/readyz')).status === 200, 90_000, peers);

    fs.writeFileSync(path.join(dir, 'kcm.kubeconfig'), kubeconfigYaml(server, caFile, cmToken, 'kcm'));
    const kcm = spawnPeer(binaries.controllerManager, [
      `--kubeconfig=${dir}/kcm.kubeconfig`, '--leader-elect=false', '--port=0', '--secure-port=0',
      '--controllers=garbagecollector,namespace,deployment,replicaset,serviceaccount,serviceaccount-token',
      `--service-account-private-key-file=${dir}/sa.key`, `--root-ca-file=${caFile}`,
      '--use-service-account-credentials=false', '--profiling=false', '--v=0',
    ]);
    peers.push(kcm);
    // The service-account controller makes "default" in kube-system once it runs: proof the controllers are up.
    await waitUntil('kube-controller-manager', async () => (await apiGet({ server, caFile }, adminToken, '/api/v1/namespaces/kube-system/serviceaccounts/default')).status === 200, 90_000, peers);
    const version = (JSON.parse((await apiGet({ server, caFile }, adminToken, '/version')).body) as { gitVersion: string }).gitVersion;
    return {
      server,
      caFile,
      adminToken,
      version,
      startSeconds: (Date.now() - started) / 1000,
      dir,
      stop,
      logs: () => peers.map((p, i) => `--- ${['etcd', 'kube-apiserver', 'kube-controller-manager'][i]} ---\n${p.output().slice(-5000)}`).join('\n'),
    };
  } catch (err) {
    const logs = peers.map((p) => p.output().slice(-2000)).join('\n---\n');
    await stop();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
}
