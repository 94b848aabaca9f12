/**
 * A kubelet (and ReplicaSet controller) stand-in for the API emulator: it runs each pod of the
 * operator's relay Deployments as a real `mailfleet relay` process on its own loopback address
 * (127.0.0.10 and up), with the config the operator rendered (its ConfigMap) and the Secrets it
 * mounts written to files. A pod is Ready when its /readyz answers; a scale-down removes the
 * pods with the lowest deletion cost first, with SIGTERM and the grace period; a new pod
 * template rolls out one pod at a time (a new pod ready before an old one goes).
 *
 * What it does not do: real networking (there is no Service: peers are every fleet address),
 * resource limits, image pulls. The relay is the real one; the pods around it are not.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { KubeEmulator, KubeObject } from '../kube/emulator.js';
import { spawnMailfleet, type RelayProcess } from '../support/process.js';

const FIRST_IP = 10;
const SLOTS = 30;

interface PodRun {
  name: string;
  ip: string;
  template: string;
  process: RelayProcess;
  ready: boolean;
  stopping: boolean;
}

type Deployment = KubeObject & { spec: { replicas: number; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } }; metadata: { generation?: number } };
interface PodSpec {
  terminationGracePeriodSeconds?: number;
  volumes: { name: string; configMap?: { name: string }; secret?: { secretName: string; items?: { key: string; path: string }[] }; emptyDir?: object }[];
  containers: { volumeMounts: { name: string; mountPath: string }[]; ports: { name: string; containerPort: number }[] }[];
}

export interface Kubelet {
  pods(): { name: string; ip: string; ready: boolean; process: RelayProcess }[];
  /** Every pod process that ever ran (their logs, for a test's report). */
  history(): RelayProcess[];
  stop(): Promise<void>;
}

export interface KubeletOptions {
  namespace: string;
  dir: string;
  /** Where the relays deliver (a test sink): there is no MX on port 25 here. */
  deliverTo: { host: string; port: number };
}

export function startKubelet(cluster: KubeEmulator, opts: KubeletOptions): Kubelet {
  const pods = new Map<string, PodRun>();
  const history: RelayProcess[] = [];
  const used = new Set<string>();
  let stopped = false;
  let counter = 0;

  const api = async (method: string, p: string, body?: unknown, type = 'application/json') => {
    const res = await fetch(`${cluster.url}${p}`, { method, headers: { 'content-type': type }, body: body === undefined ? undefined : JSON.stringify(body) });
    if (!res.ok && res.status !== 404) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
  };
  const ns = opts.namespace;
  const allIps = Array.from({ length: SLOTS }, (_, i) => `127.0.0.${FIRST_IP + i}`);

  /** The pod's files: the rendered relay.yaml with every path moved under the pod's directory. */
  function prepare(deployment: Deployment, name: string, ip: string): string {
    const podDir = path.join(opts.dir, name);
    const spec = deployment.spec.template.spec;
    const mounts = spec.containers[0]!.volumeMounts;
    const remap = new Map<string, string>();
    for (const volume of spec.volumes) {
      const mount = mounts.find((m) => m.name === volume.name)!;
      const target = path.join(podDir, 'volumes', volume.name);
      fs.mkdirSync(target, { recursive: true });
      remap.set(mount.mountPath, target);
      if (volume.configMap) {
        const cm = cluster.get({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns, name: volume.configMap.name }) as unknown as { data: Record<string, string> };
        for (const [k, v] of Object.entries(cm.data)) fs.writeFileSync(path.join(target, k), v);
      }
      if (volume.secret) {
        const secret = cluster.get({ apiVersion: 'v1', kind: 'Secret', namespace: ns, name: volume.secret.secretName }) as unknown as { data?: Record<string, string> };
        const items = volume.secret.items ?? Object.keys(secret.data ?? {}).map((key) => ({ key, path: key }));
        for (const item of items) fs.writeFileSync(path.join(target, item.path), Buffer.from(secret.data?.[item.key] ?? '', 'base64'));
      }
    }
    const moved = (p: string) => {
      for (const [from, to] of remap) if (p === from || p.startsWith(`${from}/`)) return to + p.slice(from.length);
      return p;
    };
    const config = YAML.parse(fs.readFileSync(path.join(remap.get('/etc/mailfleet/config')!, 'relay.yaml'), 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- a config rewritten field by field
    const walk = (v: unknown): unknown => (typeof v === 'string' && v.startsWith('/') ? moved(v) : Array.isArray(v) ? v.map(walk) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)])) : v);
    const local = walk(config) as typeof config;
    for (const l of local.listeners) l.address = ip;
    local.http.address = ip;
    // No cluster DNS here: every fleet address is a peer (addresses with no relay refuse at once).
    delete local.handoff.peerService;
    local.handoff.peers = allIps.filter((a) => a !== ip).map((a) => `${a}:${local.http.port}`);
    local.log = { level: 'info' };
    local.delivery.route = { type: 'smarthost', host: opts.deliverTo.host, port: opts.deliverTo.port, tls: 'none' };
    const file = path.join(podDir, 'relay.yaml');
    fs.writeFileSync(file, JSON.stringify(local));
    return file;
  }

  async function createPod(deployment: Deployment, template: string): Promise<void> {
    const ip = allIps.find((a) => !used.has(a));
    if (!ip) throw new Error('kubelet: no free loopback address');
    used.add(ip);
    const name = `${deployment.metadata.name}-${template.slice(0, 6)}-${(counter++).toString(36)}`;
    const file = prepare(deployment, name, ip);
    await api('POST', `/api/v1/namespaces/${ns}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns, labels: deployment.spec.template.metadata.labels },
      spec: { containers: [{ name: 'relay', image: 'mailfleet:local', ports: deployment.spec.template.spec.containers[0]!.ports }] },
    });
    const process = spawnMailfleet(['relay', '--config', file]);
    history.push(process);
    const run: PodRun = { name, ip, template, process, ready: false, stopping: false };
    pods.set(name, run);
    const metricsPort = deployment.spec.template.spec.containers[0]!.ports.find((p) => p.name === 'metrics')!.containerPort;
    void (async () => {
      while (!stopped && !run.stopping && process.child.exitCode === null) {
        const ok = await fetch(`http://${ip}:${metricsPort}/readyz`).then((r) => r.ok, () => false);
        if (ok) {
          run.ready = true;
          await api('PATCH', `/api/v1/namespaces/${ns}/pods/${name}/status`, { status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] } }, 'application/merge-patch+json');
          schedule();
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
  }

  async function deletePod(run: PodRun, graceSeconds: number): Promise<void> {
    run.stopping = true;
    run.ready = false;
    await api('PATCH', `/api/v1/namespaces/${ns}/pods/${run.name}/status`, { status: { conditions: [{ type: 'Ready', status: 'False' }] } }, 'application/merge-patch+json');
    run.process.child.kill('SIGTERM');
    const timer = setTimeout(() => run.process.child.kill('SIGKILL'), graceSeconds * 1000);
    await run.process.exited;
    clearTimeout(timer);
    pods.delete(run.name);
    used.delete(run.ip);
    await api('DELETE', `/api/v1/namespaces/${ns}/pods/${run.name}`);
    schedule();
  }

  const deletionCost = (run: PodRun) => Number((cluster.get({ apiVersion: 'v1', kind: 'Pod', namespace: ns, name: run.name }) as unknown as { metadata?: { annotations?: Record<string, string> } } | undefined)?.metadata?.annotations?.['controller.kubernetes.io/pod-deletion-cost'] ?? 0);

  let busy = false;
  let again = false;
  /** One pass of the ReplicaSet controller: at most one pod started or stopped at a time. */
  async function sync(): Promise<void> {
    for (const deployment of cluster.list({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns }) as Deployment[]) {
      const template = crypto.createHash('sha256').update(JSON.stringify(deployment.spec.template)).digest('hex');
      const mine = [...pods.values()].filter((p) => p.name.startsWith(`${deployment.metadata.name}-`));
      const live = mine.filter((p) => !p.stopping);
      const current = live.filter((p) => p.template === template);
      const old = live.filter((p) => p.template !== template);
      const grace = deployment.spec.template.spec.terminationGracePeriodSeconds ?? 30;
      if (current.length < deployment.spec.replicas && live.length <= deployment.spec.replicas) await createPod(deployment, template);
      else if (old.length && current.filter((p) => p.ready).length >= Math.min(deployment.spec.replicas, current.length) && current.length >= Math.min(deployment.spec.replicas, 1)) void deletePod(old[0]!, grace);
      else if (current.length > deployment.spec.replicas) void deletePod([...current].sort((a, b) => deletionCost(a) - deletionCost(b))[0]!, grace);
      const ready = current.filter((p) => p.ready).length;
      await api('PATCH', `/apis/apps/v1/namespaces/${ns}/deployments/${deployment.metadata.name}/status`, { status: { observedGeneration: deployment.metadata.generation, replicas: live.length, updatedReplicas: current.length, readyReplicas: ready, availableReplicas: ready } }, 'application/merge-patch+json');
    }
  }
  function schedule(): void {
    if (stopped) return;
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    void sync()
      .catch(() => undefined)
      .finally(() => {
        busy = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }
  const unsubscribe = cluster.onChange((c) => {
    if (c.kind === 'Deployment') schedule();
  });
  const tick = setInterval(schedule, 500);
  schedule();

  return {
    pods: () => [...pods.values()].map(({ name, ip, ready, process }) => ({ name, ip, ready, process })),
    history: () => [...history],
    stop: async () => {
      stopped = true;
      clearInterval(tick);
      unsubscribe();
      for (const run of pods.values()) run.process.child.kill('SIGKILL');
      await Promise.all([...pods.values()].map((r) => r.process.exited));
    },
  };
}
