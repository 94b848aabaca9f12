/**
 * The fleet end to end: the real operator on the API emulator, relay pods run as real
 * `mailfleet relay` processes by a kubelet stand-in (test/fleet/kubelet.ts), load from
 * clients, a slow destination. A backlog scales the fleet up within two intervals; when it is
 * gone the fleet scales down after the stabilisation window, and the pods that stop hand their
 * mail to the others: every message that got a 250 reaches the destination.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { RunningOperator } from '../operator/main.js';
import { startKubelet, type Kubelet } from './fleet/kubelet.js';
import type { KubeEmulator } from './kube/emulator.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { startCluster, startTestOperator } from './support/operator.js';
import { waitFor } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const MESSAGES = 300;

describe('fleet: autoscaling real relays on the emulator', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-fleet-'));
  let cluster: KubeEmulator | undefined;
  let operator: RunningOperator | undefined;
  let kubelet: Kubelet | undefined;
  let sink: ScriptedSink | undefined;
  afterAll(async () => {
    await operator?.stop();
    await kubelet?.stop();
    await sink?.stop();
    await cluster?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('scales up on a backlog, down after it, and loses nothing that was accepted', async () => {
    sink = await startScriptedSink({ dataDelayMs: 50 });
    cluster = await startCluster({ deploymentsBecomeAvailable: false });
    operator = await startTestOperator(cluster);
    kubelet = startKubelet(cluster, { namespace: 'mail', dir, deliverTo: { host: '127.0.0.1', port: sink.port } });
    const res = await fetch(`${cluster.url}/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/outbound?fieldManager=kubectl`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/apply-patch+yaml' },
      body: JSON.stringify({
        apiVersion: 'mailfleet.io/v1alpha1',
        kind: 'MailRelay',
        metadata: { name: 'outbound', namespace: 'mail' },
        spec: {
          listeners: [{ name: 'apps', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
          delivery: { route: 'mx', maxConnectionsPerDestination: 1 },
          terminationGracePeriodSeconds: 12,
          autoscaling: { enabled: true, minReplicas: 1, maxReplicas: 4, interval: '2s', targets: { readyMessagesPerReplica: 20 }, scaleDownStabilization: '8s' },
        },
      }),
    });
    expect(res.status).toBe(201);
    const ready = () => kubelet!.pods().filter((p) => p.ready);
    await waitFor(() => ready().length === 1, 'the first relay pod ready', 30_000);

    // Load: 300 messages over the ready pods; the destination takes 20 a second per pod.
    const accepted = new Set<string>();
    let next = 0;
    const sendOne = async (n: number) => {
      const id = `<fleet-${n}@app.test>`;
      const msg = `From: app@app.test\r\nTo: user@dest.test\r\nSubject: fleet ${n}\r\nMessage-ID: ${id}\r\n\r\nMessage ${n}.\r\n`;
      for (let attempt = 0; attempt < 30; attempt++) {
        const pods = ready().filter((p) => !p.process.output().includes('"event":"draining"'));
        const pod = pods[next++ % Math.max(1, pods.length)];
        if (pod) {
          try {
            const port = 2525;
            if ((await submitTo(pod.ip, port, msg)).startsWith('250')) return void accepted.add(id);
          } catch {
            // stopped meanwhile: another pod
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    let sent = 0;
    const started = Date.now();
    await Promise.all(Array.from({ length: 6 }, async () => { while (sent < MESSAGES) await sendOne(sent++); }));

    // The backlog (about 300 due at one pod, target 20 per replica) scales the fleet to its max.
    const deploymentReplicas = () => (cluster!.get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'mail', name: 'outbound' }) as unknown as { spec: { replicas: number } }).spec.replicas;
    await waitFor(() => deploymentReplicas() === 4, 'the Deployment scaled to 4', 20_000);
    const scaledUpAfter = (Date.now() - started) / 1000;
    await waitFor(() => ready().length === 4, 'four relay pods ready', 30_000);

    // Once the backlog is delivered, the fleet scales down after the window: pods stop and hand over.
    await waitFor(() => deploymentReplicas() === 1, 'the Deployment back to 1', 90_000);
    await waitFor(() => kubelet!.pods().length === 1, 'three pods stopped', 60_000);

    const received = () => new Set(sink!.messages.map((m) => /Message-ID: (<[^>]+>)/i.exec(m.raw.toString())?.[1]));
    await waitFor(() => [...accepted].every((id) => received().has(id)), 'every accepted message delivered', 90_000);
    const lost = [...accepted].filter((id) => !received().has(id)).length;
    const duplicates = sink.messages.length - received().size;
    const handedOver = kubelet.history().reduce((n, p) => n + Number(/"event":"handoff","handed":(\d+)/.exec(p.output())?.[1] ?? 0), 0);
    process.stdout.write(`fleet: ${accepted.size} accepted, lost ${lost}, duplicates ${duplicates}, handed over ${handedOver}, scaled to 4 after ${scaledUpAfter.toFixed(1)} s\n`);
    expect(accepted.size).toBe(MESSAGES);
    expect(lost).toBe(0);
    const events = cluster.list({ apiVersion: 'v1', kind: 'Event', namespace: 'mail' }).map((e) => (e as unknown as { reason: string }).reason);
    expect(events).toContain('ScaledUp');
    expect(events).toContain('ScaledDown');
  });

  it('rolls out a new pod template under load, pod by pod, handing each old pod\'s queue over', async () => {
    await operator?.stop();
    await kubelet?.stop();
    await cluster?.stop();
    const apply = async (resources: object) => {
      const r = await fetch(`${cluster!.url}/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/rolling?fieldManager=kubectl&force=true`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/apply-patch+yaml' },
        body: JSON.stringify({
          apiVersion: 'mailfleet.io/v1alpha1',
          kind: 'MailRelay',
          metadata: { name: 'rolling', namespace: 'mail' },
          spec: { replicas: 3, listeners: [{ name: 'apps', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }], delivery: { route: 'mx', maxConnectionsPerDestination: 1 }, terminationGracePeriodSeconds: 12, resources },
        }),
      });
      if (!r.ok) throw new Error(`apply: ${r.status} ${await r.text()}`);
    };
    sink = await startScriptedSink({ dataDelayMs: 50 });
    cluster = await startCluster({ deploymentsBecomeAvailable: false });
    operator = await startTestOperator(cluster);
    kubelet = startKubelet(cluster, { namespace: 'mail', dir: path.join(dir, 'rolling'), deliverTo: { host: '127.0.0.1', port: sink.port } });
    await apply({ requests: { memory: '128Mi' } });
    const ready = () => kubelet!.pods().filter((p) => p.ready && !p.process.output().includes('"event":"draining"'));
    await waitFor(() => ready().length === 3, 'three relay pods ready', 30_000);
    const firstPods = kubelet.pods().map((p) => p.name);

    const accepted = new Set<string>();
    let next = 0;
    let sent = 0;
    const sendOne = async (n: number) => {
      const id = `<rolling-${n}@app.test>`;
      const msg = `From: app@app.test\r\nTo: user@dest.test\r\nSubject: rolling ${n}\r\nMessage-ID: ${id}\r\n\r\nMessage ${n}.\r\n`;
      for (let attempt = 0; attempt < 50; attempt++) {
        const pods = ready();
        const pod = pods[next++ % Math.max(1, pods.length)];
        if (pod) {
          try {
            if ((await submitTo(pod.ip, 2525, msg)).startsWith('250')) return void accepted.add(id);
          } catch {
            // stopped meanwhile: another pod
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const load = Promise.all(Array.from({ length: 6 }, async () => { while (sent < MESSAGES) await sendOne(sent++); }));
    await waitFor(() => accepted.size >= MESSAGES / 3, 'a third of the load accepted', 30_000);
    await apply({ requests: { memory: '256Mi' } });
    await load;
    await waitFor(() => kubelet!.pods().length === 3 && kubelet!.pods().every((p) => p.ready && !firstPods.includes(p.name)), 'three new pods, the old ones gone', 120_000);

    const received = () => new Set(sink!.messages.map((m) => /Message-ID: (<[^>]+>)/i.exec(m.raw.toString())?.[1]));
    await waitFor(() => [...accepted].every((id) => received().has(id)), 'every accepted message delivered', 90_000);
    const lost = [...accepted].filter((id) => !received().has(id)).length;
    const duplicates = sink.messages.length - received().size;
    const handedOver = kubelet.history().reduce((n, p) => n + Number(/"event":"handoff","handed":(\d+)/.exec(p.output())?.[1] ?? 0), 0);
    process.stdout.write(`rolling update: ${accepted.size} accepted, lost ${lost}, duplicates ${duplicates}, handed over ${handedOver}\n`);
    expect(accepted.size).toBe(MESSAGES);
    expect(lost).toBe(0);
  });

  it('scales from 4 relays to 1 under load (through the scale subresource): the stopping pods hand their queues over', async () => {
    await operator?.stop();
    await kubelet?.stop();
    await cluster?.stop();
    sink = await startScriptedSink({ dataDelayMs: 50 });
    cluster = await startCluster({ deploymentsBecomeAvailable: false });
    operator = await startTestOperator(cluster);
    kubelet = startKubelet(cluster, { namespace: 'mail', dir: path.join(dir, 'down'), deliverTo: { host: '127.0.0.1', port: sink.port } });
    const r = await fetch(`${cluster.url}/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/down?fieldManager=kubectl`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/apply-patch+yaml' },
      body: JSON.stringify({
        apiVersion: 'mailfleet.io/v1alpha1',
        kind: 'MailRelay',
        metadata: { name: 'down', namespace: 'mail' },
        spec: { replicas: 4, listeners: [{ name: 'apps', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }], delivery: { route: 'mx', maxConnectionsPerDestination: 1 }, terminationGracePeriodSeconds: 12 },
      }),
    });
    expect(r.status).toBe(201);
    const ready = () => kubelet!.pods().filter((p) => p.ready && !p.process.output().includes('"event":"draining"'));
    await waitFor(() => ready().length === 4, 'four relay pods ready', 40_000);

    const accepted = new Set<string>();
    let next = 0;
    let sent = 0;
    const sendOne = async (n: number) => {
      const id = `<down-${n}@app.test>`;
      const msg = `From: app@app.test\r\nTo: user@dest.test\r\nSubject: down ${n}\r\nMessage-ID: ${id}\r\n\r\nMessage ${n}.\r\n`;
      for (let attempt = 0; attempt < 50; attempt++) {
        const pods = ready();
        const pod = pods[next++ % Math.max(1, pods.length)];
        if (pod) {
          try {
            if ((await submitTo(pod.ip, 2525, msg)).startsWith('250')) return void accepted.add(id);
          } catch {
            // stopped meanwhile: another pod
          }
        }
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    const load = Promise.all(Array.from({ length: 6 }, async () => { while (sent < MESSAGES) await sendOne(sent++); }));
    await waitFor(() => accepted.size >= MESSAGES / 3, 'a third of the load accepted', 30_000);
    const scaled = await fetch(`${cluster.url}/apis/mailfleet.io/v1alpha1/namespaces/mail/mailrelays/down/scale`, { method: 'PATCH', headers: { 'content-type': 'application/merge-patch+json' }, body: JSON.stringify({ spec: { replicas: 1 } }) });
    expect(scaled.status).toBe(200);
    await load;
    await waitFor(() => kubelet!.pods().length === 1, 'three pods stopped', 90_000);

    const received = () => new Set(sink!.messages.map((m) => /Message-ID: (<[^>]+>)/i.exec(m.raw.toString())?.[1]));
    await waitFor(() => [...accepted].every((id) => received().has(id)), 'every accepted message delivered', 90_000);
    const lost = [...accepted].filter((id) => !received().has(id)).length;
    const duplicates = sink.messages.length - received().size;
    const handedOver = kubelet.history().reduce((n, p) => n + Number(/"event":"handoff","handed":(\d+)/.exec(p.output())?.[1] ?? 0), 0);
    process.stdout.write(`scale 4 -> 1: ${accepted.size} accepted, lost ${lost}, duplicates ${duplicates}, handed over ${handedOver}\n`);
    expect(accepted.size).toBe(MESSAGES);
    expect(lost).toBe(0);
    expect(handedOver).toBeGreaterThan(0);
  });
});

/** submit() to a listener on another loopback address. */
async function submitTo(host: string, port: number, message: string): Promise<string> {
  return submit(port, 'app@app.test', ['user@dest.test'], message, host);
}
