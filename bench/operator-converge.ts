/**
 * `npm run bench:operator`: 1,000 SenderDomains (ed25519) and 50 MailRelays on the Kubernetes
 * API emulator, reconciled by the real `mailfleet operator` process. Measures the time until
 * every SenderDomain has its keys and every MailRelay is Ready, the operator's peak RSS, and
 * its API requests per object at steady state (nothing changes: should be near zero). Writes
 * bench/results/operator-converge.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startKubeEmulator } from '../test/kube/emulator.js';
import { mailfleetCrds } from '../test/support/operator.js';
import { spawnMailfleet } from '../test/support/process.js';

const DOMAINS = Number(process.env.BENCH_DOMAINS ?? 1000);
const RELAYS = Number(process.env.BENCH_RELAYS ?? 50);
const STEADY_MS = Number(process.env.BENCH_STEADY_MS ?? 60_000);
const ROOT = path.resolve(import.meta.dirname, '../..');
const NS = 'mail';

type Obj = { status?: { conditions?: { type: string; status: string }[] } };
const isTrue = (o: unknown, type: string) => (o as Obj | undefined)?.status?.conditions?.some((c) => c.type === type && c.status === 'True') ?? false;

function peakRssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

async function main(): Promise<void> {
  const cluster = await startKubeEmulator({ crds: mailfleetCrds(), namespaces: [NS], deploymentsBecomeAvailable: { afterMs: 100 }, historySize: 20_000 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-bench-operator-'));
  const kubeconfig = path.join(dir, 'kubeconfig');
  fs.writeFileSync(kubeconfig, cluster.kubeConfig().exportConfig());
  const apply = async (o: { apiVersion: string; kind: string; metadata: { name: string } }, plural: string) => {
    const base = o.apiVersion === 'v1' ? '/api/v1' : `/apis/${o.apiVersion}`;
    const res = await fetch(`${cluster.url}${base}/namespaces/${NS}/${plural}/${o.metadata.name}?fieldManager=bench`, { method: 'PATCH', headers: { 'content-type': 'application/apply-patch+yaml' }, body: JSON.stringify(o) });
    if (!res.ok) throw new Error(`${o.kind} ${o.metadata.name}: ${res.status} ${await res.text()}`);
  };

  // The objects exist before the operator starts, as after `kubectl apply -f` of a whole repo.
  for (let r = 0; r < RELAYS; r++) {
    const name = `relay-${r}`;
    await apply({ apiVersion: 'v1', kind: 'Secret', metadata: { name: `${name}-users`, namespace: NS }, stringData: { users: 'app:x' } } as never, 'secrets');
    await apply({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', metadata: { name, namespace: NS }, spec: { listeners: [{ name: 'submission', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['10.0.0.0/8'] }], usersSecretName: `${name}-users`, senderDomainSelector: { matchLabels: { relay: name } } } } as never, 'mailrelays');
  }
  for (let d = 0; d < DOMAINS; d++) {
    await apply({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', metadata: { name: `domain-${d}`, namespace: NS, labels: { relay: `relay-${d % RELAYS}` } }, spec: { domain: `domain-${d}.test`, dkim: { keyType: 'ed25519' }, verification: { resolvers: ['127.0.0.1:9'] } } } as never, 'senderdomains');
  }

  cluster.resetRequests();
  const started = performance.now();
  const op = spawnMailfleet(['operator', `--namespaces=${NS}`, '--no-leader-elect', '--metrics-port=0', '--health-port=0', '--log-level=warn'], { cwd: ROOT, env: { KUBECONFIG: kubeconfig } });
  const list = (kind: string) => cluster.list({ apiVersion: 'mailfleet.io/v1alpha1', kind, namespace: NS });
  for (;;) {
    const domainsReady = list('SenderDomain').filter((o) => isTrue(o, 'KeysReady')).length;
    const relaysReady = list('MailRelay').filter((o) => isTrue(o, 'Ready')).length;
    if (domainsReady === DOMAINS && relaysReady === RELAYS) break;
    if (op.child.exitCode !== null) throw new Error(`the operator exited:\n${op.output()}`);
    if (performance.now() - started > 600_000) throw new Error(`not converged after 10 minutes: ${domainsReady}/${DOMAINS} domains, ${relaysReady}/${RELAYS} relays`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const convergeSeconds = (performance.now() - started) / 1000;
  const requestsToConverge = cluster.requestCount();

  // Steady state: nothing changes; what does the operator still ask? (After a settling time:
  // the last status writes of convergence still come back once through the watches.)
  await new Promise((r) => setTimeout(r, Number(process.env.BENCH_SETTLE_MS ?? 10_000)));
  cluster.resetRequests();
  await new Promise((r) => setTimeout(r, STEADY_MS));
  const steady = cluster.requests().filter((r) => r.verb !== 'watch');
  const objects = DOMAINS + RELAYS;
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    domains: DOMAINS,
    relays: RELAYS,
    convergeSeconds: Number(convergeSeconds.toFixed(1)),
    requestsToConverge,
    requestsToConvergePerObject: Number((requestsToConverge / objects).toFixed(2)),
    operatorPeakRssMiB: Number(peakRssMiB(op.child.pid!).toFixed(0)),
    steadyStateWindowSeconds: STEADY_MS / 1000,
    steadyStateRequests: steady.length,
    steadyStateRequestsPerObjectPerHour: Number(((steady.length / objects) * (3_600_000 / STEADY_MS)).toFixed(3)),
    steadyStateByVerb: Object.fromEntries([...new Set(steady.map((r) => r.verb))].map((v) => [v, steady.filter((r) => r.verb === v).length])),
    steadyStateByResource: Object.fromEntries([...new Set(steady.map((r) => `${r.verb} ${r.resource}`))].map((v) => [v, steady.filter((r) => `${r.verb} ${r.resource}` === v).length])),
  };
  op.child.kill('SIGTERM');
  await op.exited;
  await cluster.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
  fs.writeFileSync(path.join(ROOT, 'bench/results/operator-converge.json'), JSON.stringify(result, null, 2) + '\n');
  console.log(JSON.stringify(result, null, 2));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
