/**
 * The fleet end to end on a real kube-apiserver: the operator (as the chart's ServiceAccount)
 * renders relay Deployments, the real Deployment and ReplicaSet controllers decide which pods
 * exist, a kubelet stand-in runs each as a real `mailfleet relay` process and reports its
 * status through the API (./kubelet.ts), clients send load, a slow destination (50 ms a
 * message, one connection per pod) receives it. Every message that got a 250 must reach the
 * destination: lost must be 0; duplicates are counted and reported.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, expect, it } from 'vitest';
import type { AnyObject } from '../../operator/kube/client.js';
import { startScriptedSink, type ScriptedSink } from '../peers/scripted-sink.js';
import { submit } from '../support/smtp-talk.js';
import { adminClient, describeCluster, ensureNamespace, eventually, installChartOnce, kubectl, kubectlApply, startChartOperator, type ChartInstall } from './harness.js';
import { startKubelet, type Kubelet } from './kubelet.js';

const MESSAGES = 300;

interface Fleet {
  ns: string;
  kubelet: Kubelet;
  sink: ScriptedSink;
  apply(name: string, spec: object): Promise<void>;
  /** Ready pods that are not draining: where a Service would send clients. */
  ready(): { ip: string }[];
  deploymentReplicas(name: string): Promise<number>;
}

type Condition = { type: string; status: string; reason: string; message: string };

describeCluster('fleet on a real kube-apiserver: operator, Deployment and ReplicaSet controllers, relay processes, load', (cluster) => {
  let chart: ChartInstall;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-cluster-fleet-'));
  const stops: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    chart = await installChartOnce(cluster());
  });
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  async function startFleet(name: string): Promise<Fleet> {
    const ns = `mf-fleet-${name}-${process.pid}`;
    await ensureNamespace(cluster(), ns);
    stops.push(() => adminClient(cluster()).delete({ apiVersion: 'v1', kind: 'Namespace', name: ns }));
    const sink = await startScriptedSink({ dataDelayMs: 50 });
    stops.push(() => sink.stop());
    const operator = await startChartOperator(cluster(), chart, ns);
    stops.push(() => operator.stop());
    const kubelet = await startKubelet(adminClient(cluster()), { namespace: ns, dir: path.join(dir, name), deliverTo: { host: '127.0.0.1', port: sink.port } });
    stops.push(() => kubelet.stop());
    return {
      ns,
      kubelet,
      sink,
      apply: async (relay, spec) => {
        await kubectlApply(cluster(), [
          {
            apiVersion: 'mailfleet.io/v1alpha1',
            kind: 'MailRelay',
            metadata: { name: relay, namespace: ns },
            spec: { listeners: [{ name: 'apps', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }], delivery: { route: 'mx', maxConnectionsPerDestination: 1 }, terminationGracePeriodSeconds: 12, ...spec },
          } as unknown as AnyObject,
        ]);
      },
      ready: () => kubelet.pods().filter((p) => p.ready && !p.stopping && !p.process.output().includes('"event":"draining"')),
      deploymentReplicas: async (relay) => ((await adminClient(cluster()).get<AnyObject & { spec: { replicas: number } }>({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name: relay }))?.spec.replicas ?? 0),
    };
  }

  /** MESSAGES messages from 6 clients spread over the ready pods; a pod that stops refuses and the client tries the next. */
  function load(fleet: Fleet, prefix: string): { accepted: Set<string>; done: Promise<unknown> } {
    const accepted = new Set<string>();
    let next = 0;
    let sent = 0;
    const sendOne = async (n: number) => {
      const id = `<${prefix}-${n}@app.test>`;
      const msg = `From: app@app.test\r\nTo: user@dest.test\r\nSubject: ${prefix} ${n}\r\nMessage-ID: ${id}\r\n\r\nMessage ${n}.\r\n`;
      for (let attempt = 0; attempt < 50; attempt++) {
        const pods = fleet.ready();
        const pod = pods[next++ % Math.max(1, pods.length)];
        if (pod) {
          try {
            if ((await submit(2525, 'app@app.test', ['user@dest.test'], msg, pod.ip)).startsWith('250')) return void accepted.add(id);
          } catch {
            // stopped meanwhile: another pod
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const done = Promise.all(
      Array.from({ length: 6 }, async () => {
        while (sent < MESSAGES) await sendOne(sent++);
      }),
    );
    return { accepted, done };
  }

  async function expectNothingLost(fleet: Fleet, label: string, accepted: Set<string>): Promise<{ handedOver: number }> {
    const received = () => new Set(fleet.sink.messages.map((m) => /Message-ID: (<[^>]+>)/i.exec(m.raw.toString())?.[1]));
    await eventually(() => [...accepted].every((id) => received().has(id)), 'every accepted message delivered', 90_000);
    const lost = [...accepted].filter((id) => !received().has(id)).length;
    const duplicates = fleet.sink.messages.length - received().size;
    const handedOver = fleet.kubelet.history().reduce((n, p) => n + Number(/"event":"handoff","handed":(\d+)/.exec(p.output())?.[1] ?? 0), 0);
    process.stdout.write(`${label} (real API server): ${accepted.size} accepted, lost ${lost}, duplicates ${duplicates}, handed over ${handedOver}\n`);
    expect(accepted.size).toBe(MESSAGES);
    expect(lost).toBe(0);
    return { handedOver };
  }

  const relayCondition = async (fleet: Fleet, name: string, type: string) => ((await adminClient(cluster()).get<AnyObject & { status?: { conditions?: Condition[] } }>({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: fleet.ns, name }))?.status?.conditions ?? []).find((c) => c.type === type);

  it('converges: pods run, the ReplicaSet controller counts them available, and the MailRelay says Ready and rolled out', async () => {
    const fleet = await startFleet('ready');
    await fleet.apply('outbound', { replicas: 2 });
    await eventually(async () => (await relayCondition(fleet, 'outbound', 'Ready'))?.status === 'True', 'the MailRelay Ready', 60_000).catch(async (err: Error) => {
      const relay = await adminClient(cluster()).get({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: fleet.ns, name: 'outbound' });
      const deployment = await adminClient(cluster()).get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: fleet.ns, name: 'outbound' });
      const pods = (await adminClient(cluster()).list('v1', 'Pod', fleet.ns)).items.map((p) => ({ name: p.metadata.name, status: p.status }));
      throw new Error(`${err.message}\nMailRelay status: ${JSON.stringify(relay?.status)}\nDeployment status: ${JSON.stringify(deployment?.status)}\npods: ${JSON.stringify(pods)}\nkubelet: ${JSON.stringify(fleet.kubelet.pods().map((p) => [p.name, p.ready, p.process.output().slice(-500)]))}`);
    });
    expect(await relayCondition(fleet, 'outbound', 'Progressing')).toMatchObject({ status: 'False', reason: 'RolledOut' });
    expect(fleet.kubelet.pods().filter((p) => p.ready)).toHaveLength(2);
    const deployment = await adminClient(cluster()).get<AnyObject & { status: { availableReplicas?: number } }>({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: fleet.ns, name: 'outbound' });
    expect(deployment?.status.availableReplicas).toBe(2);
  }, 240_000);

  it('scales from 4 relays to 1 under load (kubectl scale on the MailRelay): the stopping pods hand their queues over', async () => {
    const fleet = await startFleet('down');
    await fleet.apply('down', { replicas: 4 });
    await eventually(() => fleet.ready().length === 4, 'four relay pods ready', 60_000);
    const { accepted, done } = load(fleet, 'down');
    await eventually(() => accepted.size >= MESSAGES / 3, 'a third of the load accepted', 30_000);
    const scaled = await kubectl(cluster(), ['-n', fleet.ns, 'scale', 'mailrelay', 'down', '--replicas=1']);
    expect(scaled.code, scaled.stderr).toBe(0);
    await done;
    await eventually(() => fleet.kubelet.pods().length === 1, 'three pods stopped', 90_000);
    const { handedOver } = await expectNothingLost(fleet, 'scale 4 -> 1', accepted);
    expect(handedOver).toBeGreaterThan(0);
  }, 240_000);

  it("rolls out a new pod template under load, pod by pod (the real Deployment controller), handing each old pod's queue over", async () => {
    const fleet = await startFleet('rolling');
    await fleet.apply('rolling', { replicas: 3, resources: { requests: { memory: '128Mi' } } });
    await eventually(() => fleet.ready().length === 3, 'three relay pods ready', 60_000);
    const firstPods = fleet.kubelet.pods().map((p) => p.name);
    const { accepted, done } = load(fleet, 'rolling');
    await eventually(() => accepted.size >= MESSAGES / 3, 'a third of the load accepted', 30_000);
    await fleet.apply('rolling', { replicas: 3, resources: { requests: { memory: '256Mi' } } });
    await done;
    await eventually(() => fleet.kubelet.pods().length === 3 && fleet.kubelet.pods().every((p) => p.ready && !firstPods.includes(p.name)), 'three new pods, the old ones gone', 120_000);
    const { handedOver } = await expectNothingLost(fleet, 'rolling update', accepted);
    expect(handedOver).toBeGreaterThan(0);
  }, 240_000);

  it('a relay killed mid-load is started again in its pod (the emptyDir spool stays) and delivers what it had acknowledged', async () => {
    const fleet = await startFleet('crash');
    await fleet.apply('crash', { replicas: 2 });
    await eventually(() => fleet.ready().length === 2, 'two relay pods ready', 60_000);
    const { accepted, done } = load(fleet, 'crash');
    await eventually(() => accepted.size >= MESSAGES / 3, 'a third of the load accepted', 30_000);
    const victim = fleet.kubelet.pods()[0]!;
    victim.process.child.kill('SIGKILL');
    await done;
    // The pod's status says what happened, as kubectl get pods shows it.
    await eventually(async () => {
      const pod = await adminClient(cluster()).get<AnyObject & { status?: { containerStatuses?: { restartCount: number; ready: boolean }[] } }>({ apiVersion: 'v1', kind: 'Pod', namespace: fleet.ns, name: victim.name });
      return pod?.status?.containerStatuses?.[0]?.restartCount === 1 && pod.status.containerStatuses[0].ready;
    }, 'the pod restarted once and ready again', 60_000);
    await expectNothingLost(fleet, 'SIGKILL in a pod', accepted);
  }, 240_000);

  it('autoscaling: a backlog scales the fleet up at once; it scales down after the window; nothing is lost', async () => {
    const fleet = await startFleet('autoscale');
    await fleet.apply('outbound', { autoscaling: { enabled: true, minReplicas: 1, maxReplicas: 4, interval: '2s', targets: { readyMessagesPerReplica: 20 }, scaleDownStabilization: '8s' } });
    await eventually(() => fleet.ready().length === 1, 'the first relay pod ready', 30_000);
    const started = Date.now();
    const { accepted, done } = load(fleet, 'autoscale');
    await done;
    await eventually(async () => (await fleet.deploymentReplicas('outbound')) === 4, 'the Deployment scaled to 4', 30_000);
    process.stdout.write(`autoscale (real API server): 4 replicas ${((Date.now() - started) / 1000).toFixed(1)} s after the load began\n`);
    await eventually(() => fleet.ready().length === 4, 'four relay pods ready', 60_000);
    await eventually(async () => (await fleet.deploymentReplicas('outbound')) === 1, 'the Deployment back to 1', 90_000);
    await eventually(() => fleet.kubelet.pods().length === 1, 'three pods stopped', 60_000);
    await expectNothingLost(fleet, 'autoscale', accepted);
    const events = (await adminClient(cluster()).list<AnyObject & { reason: string }>('v1', 'Event', fleet.ns)).items.map((e) => e.reason);
    expect(events).toContain('ScaledUp');
    expect(events).toContain('ScaledDown');
  }, 240_000);
});
