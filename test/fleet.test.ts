/**
 * The fleet end to end: the real operator on the API emulator, relay pods run as real
 * `mailfleet relay` processes by a kubelet stand-in (test/fleet/kubelet.ts), load from
 * clients, a slow destination (50 ms a message, one connection per pod). Every message that
 * got a 250 must reach the destination: lost must be 0; duplicates are counted and reported.
 * Minutes of wall time on a busy machine: the suite's 60 s test timeout is raised here.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningOperator } from '../operator/main.js';
import { startKubelet, type Kubelet } from './fleet/kubelet.js';
import type { KubeEmulator } from './kube/emulator.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { startCluster, startTestOperator } from './support/operator.js';
import { waitFor } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const MESSAGES = 300;

interface Fleet {
  cluster: KubeEmulator;
  kubelet: Kubelet;
  sink: ScriptedSink;
  /** Applies the MailRelay `name` with this spec (over the test's listener and delivery). */
  apply(name: string, spec: object): Promise<void>;
  /** Ready pods that are not draining: where a Service would send clients. */
  ready(): { ip: string }[];
  deploymentReplicas(name: string): number;
}

describe('fleet: the operator, relay processes and load', { timeout: 240_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-fleet-'));
  const stops: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  async function startFleet(name: string): Promise<Fleet> {
    const sink = await startScriptedSink({ dataDelayMs: 50 });
    stops.push(() => sink.stop());
    const cluster = await startCluster({ deploymentsBecomeAvailable: false });
    stops.push(() => cluster.stop());
    const operator: RunningOperator = await startTestOperator(cluster);
    stops.push(() => operator.stop());
    const kubelet = startKubelet(cluster, { namespace: 'mail', dir: path.join(dir, name), deliverTo: { host: '127.0.0.1', port: sink.port } });
    stops.push(() => kubelet.stop());
    return {
      cluster,
      kubelet,
      sink,
      apply: async (relay, spec) => {
        const res = await fetch(`${cluster.url}/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/${relay}?fieldManager=kubectl&force=true`, {
          method: 'PATCH',
          headers: { 'content-type': 'application/apply-patch+yaml' },
          body: JSON.stringify({
            apiVersion: 'mailfleet.io/v1alpha1',
            kind: 'MailRelay',
            metadata: { name: relay, namespace: 'mail' },
            spec: { listeners: [{ name: 'apps', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }], delivery: { route: 'mx', maxConnectionsPerDestination: 1 }, terminationGracePeriodSeconds: 12, ...spec },
          }),
        });
        if (!res.ok) throw new Error(`apply MailRelay ${relay}: ${res.status} ${await res.text()}`);
      },
      ready: () => kubelet.pods().filter((p) => p.ready && !p.process.output().includes('"event":"draining"')),
      deploymentReplicas: (relay) => (cluster.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'mail', name: relay }) as unknown as { spec: { replicas: number } } | undefined)?.spec.replicas ?? 0,
    };
  }

  /**
   * MESSAGES messages from 6 clients spread over the ready pods; a pod that stops refuses and
   * the client tries the next, as an application's retry would. Resolves when all are sent.
   */
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

  /** Waits until every accepted message is at the destination, reports, and checks nothing was lost. */
  async function expectNothingLost(fleet: Fleet, label: string, accepted: Set<string>): Promise<{ handedOver: number }> {
    const received = () => new Set(fleet.sink.messages.map((m) => /Message-ID: (<[^>]+>)/i.exec(m.raw.toString())?.[1]));
    await waitFor(() => [...accepted].every((id) => received().has(id)), 'every accepted message delivered', 90_000);
    const lost = [...accepted].filter((id) => !received().has(id)).length;
    const duplicates = fleet.sink.messages.length - received().size;
    const handedOver = fleet.kubelet.history().reduce((n, p) => n + Number(/"event":"handoff","handed":(\d+)/.exec(p.output())?.[1] ?? 0), 0);
    process.stdout.write(`${label}: ${accepted.size} accepted, lost ${lost}, duplicates ${duplicates}, handed over ${handedOver}\n`);
    expect(accepted.size).toBe(MESSAGES);
    expect(lost).toBe(0);
    return { handedOver };
  }

  it('autoscaling: a backlog scales the fleet up at once; it scales down after the window; nothing is lost', async () => {
    const fleet = await startFleet('autoscale');
    await fleet.apply('outbound', { autoscaling: { enabled: true, minReplicas: 1, maxReplicas: 4, interval: '2s', targets: { readyMessagesPerReplica: 20 }, scaleDownStabilization: '8s' } });
    await waitFor(() => fleet.ready().length === 1, 'the first relay pod ready', 30_000);
    const started = Date.now();
    const { accepted, done } = load(fleet, 'autoscale');
    await done;
    // About 300 due at one pod against 20 per replica: to the max, 4 (within double or +4 at once).
    await waitFor(() => fleet.deploymentReplicas('outbound') === 4, 'the Deployment scaled to 4', 20_000);
    process.stdout.write(`autoscale: 4 replicas ${((Date.now() - started) / 1000).toFixed(1)} s after the load began\n`);
    await waitFor(() => fleet.ready().length === 4, 'four relay pods ready', 30_000);
    // The backlog delivered, the fleet goes back to 1 after the 8 s stabilisation window.
    await waitFor(() => fleet.deploymentReplicas('outbound') === 1, 'the Deployment back to 1', 90_000);
    await waitFor(() => fleet.kubelet.pods().length === 1, 'three pods stopped', 60_000);
    await expectNothingLost(fleet, 'autoscale', accepted);
    const events = fleet.cluster.list({ apiVersion: 'v1', kind: 'Event', namespace: 'mail' }).map((e) => (e as unknown as { reason: string }).reason);
    expect(events).toContain('ScaledUp');
    expect(events).toContain('ScaledDown');
  });

  it('scales from 4 relays to 1 under load (the scale subresource): the stopping pods hand their queues over', async () => {
    const fleet = await startFleet('down');
    await fleet.apply('down', { replicas: 4 });
    await waitFor(() => fleet.ready().length === 4, 'four relay pods ready', 40_000);
    const { accepted, done } = load(fleet, 'down');
    await waitFor(() => accepted.size >= MESSAGES / 3, 'a third of the load accepted', 30_000);
    const scaled = await fetch(`${fleet.cluster.url}/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/down/scale`, { method: 'PATCH', headers: { 'content-type': 'application/merge-patch+json' }, body: JSON.stringify({ spec: { replicas: 1 } }) });
    expect(scaled.status).toBe(200);
    await done;
    await waitFor(() => fleet.kubelet.pods().length === 1, 'three pods stopped', 90_000);
    const { handedOver } = await expectNothingLost(fleet, 'scale 4 -> 1', accepted);
    expect(handedOver).toBeGreaterThan(0);
  });

  it("rolls out a new pod template under load, pod by pod, handing each old pod's queue over", async () => {
    const fleet = await startFleet('rolling');
    await fleet.apply('rolling', { replicas: 3, resources: { requests: { memory: '128Mi' } } });
    await waitFor(() => fleet.ready().length === 3, 'three relay pods ready', 30_000);
    const firstPods = fleet.kubelet.pods().map((p) => p.name);
    const { accepted, done } = load(fleet, 'rolling');
    await waitFor(() => accepted.size >= MESSAGES / 3, 'a third of the load accepted', 30_000);
    await fleet.apply('rolling', { replicas: 3, resources: { requests: { memory: '256Mi' } } });
    await done;
    await waitFor(() => fleet.kubelet.pods().length === 3 && fleet.kubelet.pods().every((p) => p.ready && !firstPods.includes(p.name)), 'three new pods, the old ones gone', 120_000);
    const { handedOver } = await expectNothingLost(fleet, 'rolling update', accepted);
    expect(handedOver).toBeGreaterThan(0);
  });
});
