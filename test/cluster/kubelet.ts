/**
 * A kubelet stand-in for the real API server: the real Deployment and ReplicaSet controllers
 * decide which relay pods exist; this binds each new one to a node, runs it as a real
 * `mailfleet relay` process on a loopback address of its own (its pod IP, 127.0.1.N), reports
 * its status through the API as a kubelet does (Running, podIP, Ready once its readiness probe
 * answers, so the ReplicaSet controller counts it available), and when the API server marks it
 * for deletion (a scale-down, a rollout) it sends SIGTERM, waits up to the pod's grace period,
 * and then confirms the deletion with a zero grace period.
 *
 * A relay that exits on its own is started again after a growing backoff (restartPolicy
 * Always), its status saying so (restartCount, lastState terminated, CrashLoopBackOff).
 *
 * What it does not do: containers, images, resource limits, a network namespace per pod. The
 * pod's files are made from the ConfigMap and Secrets it mounts, read from the API; the relay's
 * config is the operator's, with its paths moved under the pod's directory, its listeners and
 * metrics on the pod IP, and two things no cluster DNS or MX can give here: the handoff peers
 * (every pod address of the fleet instead of the headless Service's name) and the route (a
 * test's SMTP sink instead of MX hosts).
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { AnyObject, KubeClient } from '../../operator/kube/client.js';
import { KubeError } from '../../operator/kube/client.js';
import { Informer } from '../../operator/kube/informer.js';
import { spawnMailfleet, type RelayProcess } from '../support/process.js';

const NODE = 'mailfleet-test-node';
const ADDRESSES = Array.from({ length: 40 }, (_, i) => `127.0.1.${10 + i}`);

interface PodSpec {
  nodeName?: string;
  terminationGracePeriodSeconds?: number;
  volumes: { name: string; configMap?: { name: string }; secret?: { secretName: string; items?: { key: string; path: string }[] }; emptyDir?: object }[];
  containers: { name: string; image: string; volumeMounts: { name: string; mountPath: string }[]; ports: { name: string; containerPort: number }[]; readinessProbe?: { httpGet?: { path: string; port: string | number } } }[];
}
type Pod = AnyObject & { spec: PodSpec; status?: { phase?: string } };

interface Run {
  name: string;
  uid: string;
  ip: string;
  /** The container's current process (a new one after each restart). */
  process: RelayProcess;
  ready: boolean;
  stopping: boolean;
  restarts: number;
}

export interface Kubelet {
  /** Pods running now (ready or not), with their processes. */
  pods(): { name: string; ip: string; ready: boolean; stopping: boolean; process: RelayProcess }[];
  /** Every process that ever ran, for a test's report. */
  history(): RelayProcess[];
  stop(): Promise<void>;
}

export interface KubeletOptions {
  namespace: string;
  dir: string;
  /** Where the relays deliver: a test's sink (there is no MX on port 25 here). */
  deliverTo: { host: string; port: number };
}

export async function startKubelet(client: KubeClient, opts: KubeletOptions): Promise<Kubelet> {
  const runs = new Map<string, Run>();
  const history: RelayProcess[] = [];
  let stopped = false;
  const ns = opts.namespace;
  const podPath = (name: string, sub = '') => `/api/v1/namespaces/${ns}/pods/${name}${sub}`;
  const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

  /** The pod's files and the relay config to run it with. */
  async function prepare(pod: Pod, ip: string): Promise<string> {
    const podDir = path.join(opts.dir, pod.metadata.name);
    const container = pod.spec.containers[0]!;
    const remap = new Map<string, string>();
    for (const volume of pod.spec.volumes) {
      const mount = container.volumeMounts.find((m) => m.name === volume.name);
      if (!mount) continue;
      const target = path.join(podDir, 'volumes', volume.name);
      fs.mkdirSync(target, { recursive: true });
      remap.set(mount.mountPath, target);
      if (volume.configMap) {
        const cm = await client.get<AnyObject & { data: Record<string, string> }>({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns, name: volume.configMap.name });
        if (!cm) throw new Error(`ConfigMap ${volume.configMap.name} not found`);
        for (const [k, v] of Object.entries(cm.data)) fs.writeFileSync(path.join(target, k), v);
      }
      if (volume.secret) {
        const secret = await client.get<AnyObject & { data?: Record<string, string> }>({ apiVersion: 'v1', kind: 'Secret', namespace: ns, name: volume.secret.secretName });
        if (!secret) throw new Error(`Secret ${volume.secret.secretName} not found`);
        const items = volume.secret.items ?? Object.keys(secret.data ?? {}).map((key) => ({ key, path: key }));
        for (const item of items) fs.writeFileSync(path.join(target, item.path), Buffer.from(secret.data?.[item.key] ?? '', 'base64'));
      }
    }
    const moved = (p: string) => {
      for (const [from, to] of remap) if (p === from || p.startsWith(`${from}/`)) return to + p.slice(from.length);
      return p;
    };
    const configPath = container.volumeMounts.find((m) => m.name === 'config')!.mountPath;
    const config = YAML.parse(fs.readFileSync(path.join(remap.get(configPath)!, 'relay.yaml'), 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- a config rewritten field by field
    const walk = (v: unknown): unknown => (typeof v === 'string' && v.startsWith('/') ? moved(v) : Array.isArray(v) ? v.map(walk) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)])) : v);
    const local = walk(config) as typeof config;
    for (const l of local.listeners) l.address = ip;
    local.http.address = ip;
    delete local.handoff.peerService;
    local.handoff.peers = ADDRESSES.filter((a) => a !== ip).map((a) => `${a}:${local.http.port}`);
    local.log = { level: 'info' };
    local.delivery.route = { type: 'smarthost', host: opts.deliverTo.host, port: opts.deliverTo.port, tls: 'none' };
    const file = path.join(podDir, 'relay.yaml');
    fs.writeFileSync(file, JSON.stringify(local));
    return file;
  }

  const patchStatus = (name: string, status: object) => client.raw('PATCH', podPath(name, '/status'), { status }, 'application/merge-patch+json').catch((err: unknown) => {
    if (!(err instanceof KubeError && err.code === 404)) throw err;
  });
  const conditions = (ready: boolean) => {
    const t = now();
    return [
      { type: 'PodScheduled', status: 'True', lastTransitionTime: t },
      { type: 'Initialized', status: 'True', lastTransitionTime: t },
      { type: 'ContainersReady', status: ready ? 'True' : 'False', lastTransitionTime: t },
      { type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: t },
    ];
  };

  /** Pod addresses in use, taken before the first await so two pods started together never share one. */
  const used = new Set<string>();

  async function start(pod: Pod): Promise<void> {
    const ip = ADDRESSES.find((a) => !used.has(a));
    if (!ip) throw new Error('kubelet: no free pod address');
    used.add(ip);
    const name = pod.metadata.name;
    let file: string;
    try {
      // Scheduling: bind to our node, as the scheduler would.
      if (!pod.spec.nodeName) await client.raw('POST', podPath(name, '/binding'), { apiVersion: 'v1', kind: 'Binding', metadata: { name }, target: { apiVersion: 'v1', kind: 'Node', name: NODE } });
      file = await prepare(pod, ip);
    } catch (err) {
      used.delete(ip);
      throw err;
    }
    const container = pod.spec.containers[0]!;
    const run: Run = { name, uid: pod.metadata.uid!, ip, process: undefined as unknown as RelayProcess, ready: false, stopping: false, restarts: 0 };
    runs.set(name, run);
    await patchStatus(name, { phase: 'Running', hostIP: '127.0.0.1', podIP: ip, podIPs: [{ ip }], startTime: now(), conditions: conditions(false) });
    const probe = container.readinessProbe?.httpGet;
    const port = typeof probe?.port === 'string' ? container.ports.find((p) => p.name === probe.port)?.containerPort : probe?.port;
    const containerStatus = (ready: boolean, state: object, lastState: object = {}) => ({ name: container.name, image: container.image, imageID: '', ready, started: ready || 'running' in state, restartCount: run.restarts, state, lastState });

    /** The container: started, probed until ready, and started again (with a backoff) when it exits on its own, as restartPolicy Always says. */
    const runContainer = async (lastState: object = {}): Promise<void> => {
      const process = spawnMailfleet(['relay', '--config', file], { env: { POD_IP: ip } });
      run.process = process;
      history.push(process);
      const startedAt = now();
      await patchStatus(name, { conditions: conditions(false), containerStatuses: [containerStatus(false, { running: { startedAt } }, lastState)] });
      void process.exited.then(async (code) => {
        if (stopped || run.stopping) return;
        run.ready = false;
        const terminated = { terminated: { exitCode: typeof code === 'number' ? code : 137, reason: 'Error', startedAt, finishedAt: now() } };
        run.restarts++;
        await patchStatus(name, { conditions: conditions(false), containerStatuses: [containerStatus(false, { waiting: { reason: 'CrashLoopBackOff' } }, terminated)] });
        await new Promise((r) => setTimeout(r, Math.min(10_000, 1000 * 2 ** (run.restarts - 1))));
        if (!stopped && !run.stopping) await runContainer(terminated);
      });
      // The readiness probe, as the pod declares it.
      while (!stopped && !run.stopping && process.child.exitCode === null) {
        if (await fetch(`http://${ip}:${port}${probe?.path ?? '/readyz'}`).then((r) => r.ok, () => false)) {
          run.ready = true;
          await patchStatus(name, { conditions: conditions(true), containerStatuses: [containerStatus(true, { running: { startedAt } }, lastState)] });
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    void runContainer().catch((err: unknown) => globalThis.process.stderr.write(`kubelet: pod ${name}: ${(err as Error).message}\n`));
  }

  /** The API server marked the pod for deletion: drain it within its grace period, then confirm. */
  async function terminate(run: Run, graceSeconds: number): Promise<void> {
    run.stopping = true;
    run.ready = false;
    await patchStatus(run.name, { conditions: conditions(false) });
    run.process.child.kill('SIGTERM');
    const timer = setTimeout(() => run.process.child.kill('SIGKILL'), graceSeconds * 1000);
    await run.process.exited;
    clearTimeout(timer);
    runs.delete(run.name);
    used.delete(run.ip);
    await client.raw('DELETE', `${podPath(run.name)}?gracePeriodSeconds=0`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid: run.uid } }).catch((err: unknown) => {
      if (!(err instanceof KubeError && (err.code === 404 || err.code === 409))) throw err;
    });
  }

  const pending = new Set<string>();
  const informer = new Informer(client, {
    apiVersion: 'v1',
    kind: 'Pod',
    namespace: ns,
    labelSelector: 'app.kubernetes.io/managed-by=mailfleet-operator',
    resyncMs: 2000,
    onChange: (_key, object) => {
      if (stopped || !object) return;
      const pod = object as Pod;
      const name = pod.metadata.name;
      if (pending.has(name)) return;
      const run = runs.get(name);
      let work: Promise<void> | undefined;
      if (pod.metadata.deletionTimestamp && run && !run.stopping) work = terminate(run, pod.spec.terminationGracePeriodSeconds ?? 30);
      else if (!pod.metadata.deletionTimestamp && !run && pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed') work = start(pod);
      if (!work) return;
      pending.add(name);
      void work.catch((err: unknown) => process.stderr.write(`kubelet: pod ${name}: ${(err as Error).message}\n`)).finally(() => pending.delete(name));
    },
  });
  await informer.start();

  return {
    pods: () => [...runs.values()].map(({ name, ip, ready, stopping, process }) => ({ name, ip, ready, stopping, process })),
    history: () => [...history],
    stop: async () => {
      stopped = true;
      informer.stop();
      for (const run of runs.values()) run.process.child.kill('SIGKILL');
      await Promise.all([...runs.values()].map((r) => r.process.exited));
      // Gone with their node: confirm each pod's deletion, or it would wait for a kubelet forever
      // (and its namespace with it).
      await Promise.all([...runs.values()].map((r) => client.raw('DELETE', `${podPath(r.name)}?gracePeriodSeconds=0`).catch(() => undefined)));
    },
  };
}
