/**
 * The autoscaler in the real operator (as the chart's ServiceAccount) against a real
 * kube-apiserver v1.20.2: the operator renders the relay Deployment, the real Deployment and
 * ReplicaSet controllers make its pods, and a scripted kubelet stand-in (below) runs each pod
 * as a small HTTP server whose /metrics reports a queue the test sets. What a user sees is
 * checked: the Deployment's replicas, the MailRelay's status and Events, the pods' deletion
 * cost, and `kubectl scale` on the MailRelay.
 *
 * How the pods get their status: as a kubelet would, through the API. Each pod the ReplicaSet
 * controller makes is bound to a node (the Binding subresource, as the scheduler would) and
 * its status patched to Running and Ready with a pod IP of its own on loopback (127.0.2.N:
 * the operator renders the metrics containerPort as 9090 whatever the pod, so each pod's
 * server needs an address of its own), where its scripted server listens on port 9090. The
 * operator finds the pods through its own Pod watch and scrapes http://podIP:9090/metrics.
 * A pod the API server marks for deletion has its server closed and its deletion confirmed.
 *
 * What v1.20 cannot show: which pod a scale-down removes. kube-controller-manager v1.20's
 * ReplicaSet controller ignores controller.kubernetes.io/pod-deletion-cost (alpha, behind the
 * PodDeletionCost gate, in 1.21; on by default from 1.22), so only the annotation the operator
 * sets is checked here, not the ReplicaSet controller's choice by it.
 */
import http from 'node:http';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { KubeError, type AnyObject, type KubeClient } from '../../operator/kube/client.js';
import { Informer } from '../../operator/kube/informer.js';
import type { RunningOperator } from '../../operator/main.js';
import { SMARTHOST_AUTH_REASONS } from '../../relay/delivery/smarthost-auth.js';
import { adminClient, describeCluster, ensureNamespace, eventually, installChartOnce, kubectl, kubectlApply, startChartOperator, type ChartInstall } from './harness.js';

/**
 * What a scripted pod's /metrics does: report a queue; hang (a wedged pod); answer 503; or
 * hold each request unanswered until the test sets a queue (`ScriptedPod.set`), so that every
 * pod of one pass of the autoscaler answers with what the test decided at the same moment.
 */
type Queue = { ready: number; queued: number; auth?: SmarthostAuth } | 'silent' | 'unavailable' | 'held';
/** The smarthost authentication metrics a pod reports: successes, and the reason its last attempt failed. */
type SmarthostAuth = { successes: number; failing?: string };

interface ScriptedPod {
  name: string;
  ip: string;
  /** Requests its /metrics has had: each is one of the autoscaler's passes over the fleet. */
  scrapes: number;
  /** Requests held open now (queue 'held'), the scraper still waiting. */
  held(): number;
  /** What /metrics does from now on; requests held so far are answered by it. */
  set(queue: Queue): void;
}

interface ScriptedKubelet {
  /** Pods running now, in the order they were started. */
  pods(): ScriptedPod[];
  stop(): Promise<void>;
}

const NODE = 'mailfleet-test-node';
const METRICS_PORT = 9090;
/** Pod IPs: 127.0.2.N (the fleet's kubelet stand-in uses 127.0.1.N). */
const ADDRESSES = Array.from({ length: 240 }, (_, i) => `127.0.2.${10 + i}`);
/** Addresses taken by this process (another process's servers show as EADDRINUSE and are skipped). */
const taken = new Set<string>();
const DELETION_COST = 'controller.kubernetes.io/pod-deletion-cost';

function exposition(queue: { ready: number; queued: number; auth?: SmarthostAuth }): string {
  const auth = queue.auth
    ? `mailfleet_relay_smarthost_auth_successes_total ${queue.auth.successes}\n` +
      Object.keys(SMARTHOST_AUTH_REASONS)
        .map((reason) => `mailfleet_relay_smarthost_auth_failures_total{reason="${reason}"} ${reason === queue.auth!.failing ? 1 : 0}\nmailfleet_relay_smarthost_auth_failing{reason="${reason}"} ${reason === queue.auth!.failing ? 1 : 0}\n`)
        .join('')
    : '';
  return `mailfleet_relay_queue_messages{state="ready"} ${queue.ready}\nmailfleet_relay_queue_messages{state="deferred"} ${queue.queued - queue.ready}\nmailfleet_relay_queue_messages{state="inflight"} 0\nmailfleet_relay_queue_oldest_ready_seconds 1\nmailfleet_relay_smtp_sessions{listener="submission"} 0\n${auth}`;
}

/** A pod's /metrics server, on the first free 127.0.2.N:9090. */
async function scriptedServer(name: string, initial: Queue): Promise<ScriptedPod & { server: http.Server }> {
  let queue = initial;
  const held = new Set<http.ServerResponse>();
  const answer = (res: http.ServerResponse) => {
    if (queue === 'silent' || queue === 'held') return false; // silent: accepts and never answers, as a wedged pod would
    if (queue === 'unavailable') res.writeHead(503).end('starting\n');
    else res.end(exposition(queue));
    return true;
  };
  const server = http.createServer((_req, res) => {
    pod.scrapes++;
    if (queue === 'held') {
      held.add(res);
      res.on('close', () => held.delete(res));
    } else answer(res);
  });
  const pod = {
    name,
    ip: '',
    scrapes: 0,
    server,
    held: () => held.size,
    set: (q: Queue) => {
      queue = q;
      for (const res of held) if (answer(res)) held.delete(res);
    },
  };
  for (const ip of ADDRESSES) {
    if (taken.has(ip)) continue;
    taken.add(ip);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(METRICS_PORT, ip, () => {
          server.off('error', reject);
          resolve();
        });
      });
      pod.ip = ip;
      return pod;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
        taken.delete(ip);
        throw err;
      }
    }
  }
  throw new Error('scripted kubelet: no free pod address in 127.0.2.0/24');
}

/**
 * The kubelet stand-in: every relay pod of the namespace that appears (made by the ReplicaSet
 * controller) is started with `plan(n)` as its /metrics, n counting the pods in the order seen.
 */
async function startScriptedKubelet(client: KubeClient, namespace: string, plan: (n: number) => Queue): Promise<ScriptedKubelet> {
  const running = new Map<string, ScriptedPod & { uid: string; server: http.Server }>();
  const busy = new Set<string>();
  let seen = 0;
  let stopped = false;
  const podPath = (name: string, sub = '') => `/api/v1/namespaces/${namespace}/pods/${name}${sub}`;
  const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const close = (pod: { ip: string; server: http.Server }) => {
    pod.server.closeAllConnections();
    taken.delete(pod.ip);
    return new Promise<void>((r) => pod.server.close(() => r()));
  };

  async function start(pod: AnyObject & { spec: { nodeName?: string; containers: { name: string; image: string }[] } }): Promise<void> {
    const name = pod.metadata.name;
    const scripted = Object.assign(await scriptedServer(name, plan(seen++)), { uid: pod.metadata.uid! });
    running.set(name, scripted);
    const ip = scripted.ip;
    // Scheduling: bound to our node, as the scheduler would.
    if (!pod.spec.nodeName) await client.raw('POST', podPath(name, '/binding'), { apiVersion: 'v1', kind: 'Binding', metadata: { name }, target: { apiVersion: 'v1', kind: 'Node', name: NODE } });
    const t = now();
    const container = pod.spec.containers[0]!;
    // Running and Ready at once: its server is listening (a scripted pod has no start-up to wait for).
    await client.raw(
      'PATCH',
      podPath(name, '/status'),
      {
        status: {
          phase: 'Running',
          hostIP: '127.0.0.1',
          podIP: ip,
          podIPs: [{ ip }],
          startTime: t,
          conditions: ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'].map((type) => ({ type, status: 'True', lastTransitionTime: t })),
          containerStatuses: [{ name: container.name, image: container.image, imageID: '', ready: true, started: true, restartCount: 0, state: { running: { startedAt: t } } }],
        },
      },
      'application/merge-patch+json',
    );
  }

  /** Marked for deletion (a scale-down, the namespace going): stop serving, confirm with a zero grace period. */
  async function terminate(name: string): Promise<void> {
    const pod = running.get(name)!;
    running.delete(name);
    await close(pod);
    await client.raw('DELETE', `${podPath(name)}?gracePeriodSeconds=0`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid: pod.uid } }).catch((err: unknown) => {
      if (!(err instanceof KubeError && (err.code === 404 || err.code === 409))) throw err;
    });
  }

  const informer = new Informer(client, {
    apiVersion: 'v1',
    kind: 'Pod',
    namespace,
    labelSelector: 'app.kubernetes.io/managed-by=mailfleet-operator',
    resyncMs: 2000,
    onChange: (_key, object) => {
      if (stopped || !object || busy.has(object.metadata.name)) return;
      const pod = object as Parameters<typeof start>[0] & { status?: { phase?: string } };
      const name = pod.metadata.name;
      const phase = pod.status?.phase ?? 'Pending';
      let work: Promise<void> | undefined;
      if (pod.metadata.deletionTimestamp && running.has(name)) work = terminate(name);
      else if (!pod.metadata.deletionTimestamp && !running.has(name) && phase === 'Pending') work = start(pod);
      if (!work) return;
      busy.add(name);
      void work.catch((err: unknown) => process.stderr.write(`scripted kubelet: pod ${name}: ${(err as Error).message}\n`)).finally(() => busy.delete(name));
    },
  });
  await informer.start();
  return {
    pods: () => [...running.values()],
    stop: async () => {
      stopped = true;
      informer.stop();
      await Promise.all([...running.values()].map(close));
      running.clear();
    },
  };
}

type Relay = AnyObject & { spec: { replicas: number }; status?: { replicas?: number; readyReplicas?: number; queueSummary?: string; autoscaler?: { desiredReplicas?: number; lastDecision?: string }; lastScale?: { time: string; from: number; to: number; reason: string }; conditions?: { type: string; status: string }[] } };
type Deployment = AnyObject & { spec: { replicas: number } };
type Pod = AnyObject & { metadata: { annotations?: Record<string, string> } };

describeCluster('autoscaler on a real kube-apiserver: the operator, the Deployment and ReplicaSet controllers, pods with scripted /metrics', (cluster) => {
  let chart: ChartInstall;
  const stops: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    chart = await installChartOnce(cluster());
  });
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });
  /** Kubelet stand-ins whose namespaces are going. */
  const leftovers: (() => Promise<void>)[] = [];
  afterAll(async () => {
    await Promise.all(leftovers.splice(0).map((f) => f()));
  });

  const admin = () => adminClient(cluster());
  let ns = '';
  let operator: RunningOperator;
  let kubelet: ScriptedKubelet;

  /** A namespace, the operator watching it as the chart's ServiceAccount, the kubelet stand-in, and the MailRelay "outbound". */
  async function setup(name: string, autoscaling: object, plan: (n: number) => Queue, more: { spec?: object; objects?: object[] } = {}): Promise<void> {
    ns = `mf-as-${name}-${process.pid}`;
    await ensureNamespace(cluster(), ns);
    const namespace = ns;
    const pods = await startScriptedKubelet(admin(), ns, plan);
    kubelet = pods;
    // A pod bound to a node is gone only when its kubelet confirms the deletion: the stand-in
    // keeps running while the namespace controller empties the namespace (in the background,
    // during the next tests), until the file's end.
    stops.push(() => admin().delete({ apiVersion: 'v1', kind: 'Namespace', name: namespace }));
    leftovers.push(async () => {
      await eventually(async () => (await admin().list('v1', 'Pod', namespace)).items.length === 0, `the pods of ${namespace} deleted`, 60_000);
      await pods.stop();
    });
    operator = await startChartOperator(cluster(), chart, ns);
    const op = operator;
    stops.push(() => op.stop());
    await kubectlApply(cluster(), [
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'outbound-users', namespace: ns }, stringData: { users: 'app:x' } },
      ...(more.objects ?? []).map((o) => ({ ...o, metadata: { ...(o as { metadata: object }).metadata, namespace: ns } })),
      {
        apiVersion: 'mailfleet.io/v1alpha1',
        kind: 'MailRelay',
        metadata: { name: 'outbound', namespace: ns },
        spec: { listeners: [{ name: 'submission', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['10.0.0.0/8'] }], usersSecretName: 'outbound-users', autoscaling, ...more.spec },
      },
    ] as unknown as AnyObject[]);
    await eventually(async () => !!(await deployment()), 'the Deployment');
  }

  const relay = async () => (await admin().get<Relay>({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: ns, name: 'outbound' }))!;
  const deployment = () => admin().get<Deployment>({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name: 'outbound' });
  const deploymentReplicas = async () => (await deployment())?.spec.replicas;
  const deletionCost = async (name: string) => (await admin().get<Pod>({ apiVersion: 'v1', kind: 'Pod', namespace: ns, name }))?.metadata.annotations?.[DELETION_COST];
  const events = async (reason: string) => (await admin().list<AnyObject & { reason: string; message: string }>('v1', 'Event', ns)).items.filter((e) => e.reason === reason);
  const upDecisions = async () => (await operator.metrics.scalingDecisions.get()).values.filter((v) => v.labels.direction === 'up').reduce((n, v) => n + v.value, 0);
  /** Resolves once every pod given has been scraped `more` times after now: the autoscaler has made that many passes since, less one (a pass decides after its scrapes, and the next starts after it ends). */
  const passes = async (pods: ScriptedPod[], more: number, what: string) => {
    const from = pods.map((p) => p.scrapes);
    await eventually(() => pods.every((p, i) => p.scrapes >= from[i]! + more), what, 30_000);
  };

  /**
   * The ReplicaSet's two pods running, and one pass of the autoscaler waiting on both at once
   * (a pass scrapes every ready pod together and times out after 5 s; the next starts after).
   */
  const bothHeld = async () => {
    await eventually(() => kubelet.pods().length === 2 && kubelet.pods().every((p) => p.held() > 0), 'a pass of the autoscaler scraping both pods', 30_000);
    return kubelet.pods();
  };

  it('scales a backlog up at once within the rate policy, says why, and marks the fullest pods costly to delete', async () => {
    const full = { ready: 1000, queued: 1030 };
    // The Deployment's first two pods hold the autoscaler's scrapes unanswered until one pass
    // of it is waiting on both, then both answer 1,000 due messages: its decision sees the whole
    // fleet, as the emulator's did, rather than a pod that turned ready a moment before the other
    // (the other then counted idle, and the reason would depend on timing). Pods made by the
    // scale-up hold nothing.
    await setup('up', { enabled: true, minReplicas: 2, maxReplicas: 10, interval: '1s', targets: { readyMessagesPerReplica: 100 } }, (n) => (n < 2 ? 'held' : { ready: 0, queued: 0 }));
    expect(await deploymentReplicas()).toBe(2);
    const first = await bothHeld();
    for (const p of first) p.set(full);

    // 2 pods at 1,000 due messages each against 100 per replica ask for 20; the rate allows double or +4: 6 now.
    await eventually(async () => (await deploymentReplicas()) === 6, 'the Deployment at 6 replicas', 30_000);
    const status = (await relay()).status!;
    expect(status.autoscaler?.desiredReplicas).toBe(6);
    expect(status.lastScale).toMatchObject({ from: 2, to: 6 });
    expect(status.lastScale!.reason).toBe('Scaling up from 2 to 6: messages due now per replica 1000 vs target 100 asks for 20; the scale-up rate allows 6 now (double or +4 pods per 15 s).');
    await eventually(async () => (await events('ScaledUp')).length > 0, 'the ScaledUp Event');
    expect((await events('ScaledUp')).map((e) => e.message)).toEqual([status.lastScale!.reason]);

    // The ReplicaSet controller makes the 4 new pods; the kubelet stand-in runs them, empty.
    await eventually(() => kubelet.pods().length === 6, 'six pods running', 30_000);
    // 1,030 messages held: the deletion cost is the power of two below, so small moves do not
    // patch the pod; the empty pods cost 0 to delete. (Set by the operator as its ServiceAccount.)
    const costs = async () => Object.fromEntries(await Promise.all(kubelet.pods().map(async (p) => [p.name, await deletionCost(p.name)] as const)));
    const wanted = Object.fromEntries(kubelet.pods().map((p) => [p.name, first.includes(p) ? '1024' : '0']));
    await eventually(async () => JSON.stringify(await costs()) === JSON.stringify(wanted), 'the deletion costs (1024 on the two full pods, 0 on the new ones)');

    // Within the 15 s rate period the next decisions may not add more: still one scale-up
    // after two more passes (the pods' scrapes show the autoscaler made them).
    await passes(kubelet.pods(), 2, 'two more passes of the autoscaler');
    const elapsed = Date.now() - Date.parse(status.lastScale!.time);
    expect(elapsed, 'checked within the rate period (15 s) of the scale-up').toBeLessThan(15_000);
    expect(await deploymentReplicas()).toBe(6);
    expect(await upDecisions()).toBe(1);
    expect((await relay()).status!.lastScale).toEqual(status.lastScale);
  });

  it('treats a pod whose /metrics does not answer as the HPA does: idle when scaling up', async () => {
    await setup('silent', { enabled: true, minReplicas: 2, maxReplicas: 10, interval: '1s', targets: { readyMessagesPerReplica: 100 } }, (n) => (n < 2 ? 'held' : { ready: 0, queued: 0 }));
    // One pass of the autoscaler waits on both pods: one never answers it, the other does.
    const [busy, silent] = (await bothHeld()) as [ScriptedPod, ScriptedPod];
    silent.set('silent');
    busy.set({ ready: 300, queued: 300 });
    // Counted as 0: (300 + 0) / 100 = 3 replicas, not the 6 that ignoring it would ask for.
    await eventually(async () => (await deploymentReplicas()) === 3, 'the Deployment at 3 replicas', 45_000);
    expect((await relay()).status!.lastScale!.reason).toBe('Scaling up from 2 to 3: messages due now per replica 300 vs target 100 (150 counting the 1 ready pod(s) that did not answer /metrics as idle, as the HPA does) asks for 3.');
    expect(await deletionCost(busy.name)).toBe('256');
    expect(await deletionCost(silent.name)).toBeUndefined();
  });

  it('with autoscaling off, replicas follow the MailRelay scale subresource (kubectl scale, as an HPA or KEDA would), and the operator does not fight them', async () => {
    // Every pod answers 503 until the test gives one a queue. The autoscaler's loop still
    // scrapes (for the queue in status) every interval: 1 s here, not 15, to keep the test short.
    await setup('off', { enabled: false, interval: '1s' }, () => 'unavailable');
    expect(await deploymentReplicas()).toBe(2);
    const scaled = await kubectl(cluster(), ['-n', ns, 'scale', 'mailrelay', 'outbound', '--replicas=5']);
    expect(scaled.code, scaled.stderr).toBe(0);
    expect(scaled.stdout).toContain('scaled');
    await eventually(async () => (await deploymentReplicas()) === 5, 'the Deployment at 5 replicas');
    const generation = (await deployment())!.metadata.generation;
    // The MailRelay controller reconciles on every change of the Deployment's status; once it
    // reports the five pods ready it has reconciled after the scale, and left it alone.
    await eventually(async () => (await relay()).status?.readyReplicas === 5, 'the MailRelay reporting 5 ready replicas', 45_000);
    expect(kubelet.pods()).toHaveLength(5);
    const after = await relay();
    expect(after.spec.replicas).toBe(5);
    expect(after.status?.replicas).toBe(5);
    expect(after.status?.autoscaler).toBeUndefined();
    // The queue over the fleet still shows in status (kubectl's Queue column), from the one pod that answers.
    const [pod] = kubelet.pods() as [ScriptedPod];
    pod.set({ ready: 7, queued: 10 });
    await eventually(async () => (await relay()).status?.queueSummary === '7 due, 3 waiting', 'the queue summary in status', 30_000);
    await eventually(async () => (await deletionCost(pod.name)) === '8', 'the deletion cost of the pod holding 10 messages');
    // The autoscaler's loop has looked at the fleet of 5 since (it wrote the summary, and two
    // more passes): replicas as kubectl left them, the Deployment not written again.
    await passes(kubelet.pods(), 2, 'two more passes of the autoscaler');
    expect(await deploymentReplicas()).toBe(5);
    expect((await deployment())!.metadata.generation).toBe(generation);
    expect((await relay()).spec.replicas).toBe(5);
    expect(await upDecisions()).toBe(0);
  });

  it('reads the pods\' smarthost authentication into SmarthostAuthenticated, written as it changes (not held to the state\'s minute), beside the MailRelay controller\'s conditions, with one Warning Event when it turns False', async () => {
    const idle = (auth: SmarthostAuth): Queue => ({ ready: 0, queued: 0, auth });
    await setup('auth', { enabled: false, interval: '1s' }, () => idle({ successes: 0 }), {
      spec: { delivery: { route: 'smarthost', smarthost: { host: 'smtp.office365.com', credentialsSecretName: 'm365-basic' } } },
      objects: [{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'm365-basic' }, stringData: { username: 'relay@contoso.com', password: 'an-old-password' } }],
    });
    const condition = async () => (await relay()).status?.conditions?.find((c) => c.type === 'SmarthostAuthenticated') as { status: string; reason: string; message: string } | undefined;
    await eventually(async () => (await condition())?.reason === 'NotYetAttempted' && (await condition())!.message.startsWith('none of 2 relay pods'), 'SmarthostAuthenticated NotYetAttempted over both pods', 30_000);
    expect(await condition()).toMatchObject({ status: 'Unknown' });

    for (const p of kubelet.pods()) p.set(idle({ successes: 0, failing: 'basic_auth_disabled' }));
    await eventually(async () => (await condition())?.reason === 'BasicAuthDisabled', 'SmarthostAuthenticated BasicAuthDisabled', 30_000);
    const failed = (await condition())!;
    expect(failed.status).toBe('False');
    expect(failed.message).toContain('2 of 2 relay pods could not authenticate to the smarthost at the last attempt (basic_auth_disabled)');
    expect(failed.message).toContain(SMARTHOST_AUTH_REASONS.basic_auth_disabled.todo);
    await eventually(async () => (await events('BasicAuthDisabled')).length > 0, 'the BasicAuthDisabled Event');
    // Ready comes from the MailRelay controller, which writes the same list: both stay.
    await eventually(async () => (await relay()).status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True', 'Ready beside it', 45_000);
    expect((await condition())?.reason).toBe('BasicAuthDisabled');

    for (const p of kubelet.pods()) p.set(idle({ successes: 1 }));
    await eventually(async () => (await condition())?.reason === 'Authenticated', 'SmarthostAuthenticated Authenticated', 30_000);
    expect(await condition()).toMatchObject({ status: 'True', message: '2 of 2 relay pods authenticated to the smarthost; none is failing' });
    await passes(kubelet.pods(), 2, 'two more passes of the autoscaler');
    expect((await events('BasicAuthDisabled')).map((e) => e.message)).toEqual([failed.message]);
    expect((await relay()).status?.conditions?.map((c) => c.type).sort()).toEqual(['Degraded', 'Progressing', 'Ready', 'SmarthostAuthenticated']);
  });
});
