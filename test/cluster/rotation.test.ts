/**
 * A DKIM rotation walked with a fake clock: the SenderDomain controller against a real
 * kube-apiserver v1.20.2 (the chart's CRDs and RBAC), checking its records against a real DNS
 * server (dnsmasq) that serves, or does not yet serve, the new key's records.
 *
 * The controller runs as the chart's ServiceAccount (a token the API server signed), not as
 * the admin: in a cluster it runs with those rights only, so RBAC judges every request it
 * makes here (reading the SenderDomain and its Secret, applying the key Secret, patching
 * status, creating Events); an admin client would hide a rule the chart lacks. The user's side
 * (kubectl apply of the SenderDomain) and the test's reads are the admin's.
 *
 * The clock is the controller's only: the test calls reconcile at each instant itself, where
 * the operator's work queue would requeue it (the API server's own timestamps stay real).
 */
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { senderDomainSpecSchema, type SenderDomain } from '../../operator/api/v1alpha1.js';
import { KubeEvents } from '../../operator/controllers/events.js';
import { SenderDomainController } from '../../operator/controllers/senderdomain.js';
import { KubeClient, type AnyObject } from '../../operator/kube/client.js';
import { verifyRecords } from '../../relay/records-verify.js';
import { describePeer } from '../peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq, type Dnsmasq } from '../peers/dnsmasq.js';
import { freePort } from '../peers/ports.js';
import { adminClient, describeCluster, ensureNamespace, eventually, installChartOnce, kubeConfigFor, kubectlApply, serviceAccountToken, type ChartInstall } from './harness.js';

const DAY = 86400_000;

describeCluster('DKIM rotation on a real kube-apiserver', (cluster) => {
  describePeer('DKIM rotation with a fake clock and dnsmasq', DNSMASQ_BINARIES, () => {
    let chart: ChartInstall;
    let dns: Dnsmasq | undefined;
    let dnsPort: number;
    const ns = `mf-rotation-${process.pid}`;
    beforeAll(async () => {
      chart = await installChartOnce(cluster());
      await ensureNamespace(cluster(), ns);
      dnsPort = await freePort();
    });
    afterAll(async () => {
      await dns?.stop();
      // The namespace controller empties it in the background.
      await adminClient(cluster()).delete({ apiVersion: 'v1', kind: 'Namespace', name: ns });
    });

    /** dnsmasq serving exactly these TXT records (restarted on the same port). */
    async function serve(records: { name: string; value: string }[]) {
      await dns?.stop();
      dns = await startDnsmasq({ port: dnsPort, txt: records.map((r) => ({ name: r.name, values: [r.value] })) });
    }

    it('makes the next key, waits for DNS and its TTL, switches signing, keeps the old key through the overlap, then retires it', async () => {
      const admin = adminClient(cluster());
      const client = new KubeClient(kubeConfigFor(cluster(), await serviceAccountToken(cluster(), chart.namespace, chart.serviceAccount)));
      const eventErrors: unknown[] = [];
      let now = new Date('2026-01-01T00:00:00Z');
      const controller = new SenderDomainController({
        client,
        events: new KubeEvents(client, (err) => eventErrors.push(err), () => now.getTime()),
        log: pino({ level: process.env.MF_TEST_LOG ?? 'silent' }),
        now: () => now,
        relays: () => [],
        secret: () => undefined,
        dnsEndpoints: () => false,
        verify: (records, servers) => verifyRecords(records, { servers, timeoutMs: 1000 }),
        reverse: () => Promise.resolve([]),
      });
      await kubectlApply(cluster(), [
        {
          apiVersion: 'mailfleet.io/v1alpha1',
          kind: 'SenderDomain',
          metadata: { name: 'example-test', namespace: ns },
          spec: { domain: 'example.test', dkim: { rotation: { period: '30d', overlap: '7d' } }, dnsEndpoint: { ttl: 300 }, verification: { resolvers: [`127.0.0.1:${dnsPort}`], interval: '10m' } },
        } as unknown as AnyObject,
      ]);
      const ref = { apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', namespace: ns, name: 'example-test' };
      const read = async () => (await admin.get<never>(ref)) as unknown as SenderDomain;
      const step = async (at: Date) => {
        now = at;
        // What the operator's informer would hand it: the object as its ServiceAccount reads it.
        const sd = (await client.get<never>(ref)) as unknown as SenderDomain;
        return controller.reconcile({ ...sd, spec: senderDomainSpecSchema.parse(sd.spec) });
      };
      const keys = async () => (await read()).status!.keys!.map((k) => `${k.selector}:${k.state}`);
      const condition = async (type: string) => (await read()).status!.conditions!.find((c) => c.type === type)!;
      const secretKeys = async () => Object.keys((await admin.get<AnyObject & { data: object }>({ apiVersion: 'v1', kind: 'Secret', namespace: ns, name: 'example-test-dkim' }))!.data).sort();

      await serve([]);
      await step(now);
      expect(await keys()).toEqual(['mailfleet-1-rsa:active', 'mailfleet-1-ed:active']);
      expect((await condition('DNSVerified')).status).toBe('False');

      // The user publishes the records from status; the next check sees them.
      await serve((await read()).status!.records!);
      await step(new Date(now.getTime() + 10 * 60_000));
      expect(await condition('DNSVerified')).toMatchObject({ status: 'True', message: 'all 4 records served' });
      expect((await condition('Ready')).status).toBe('True');

      // The period ends: the next keys are made and published, but DNS does not serve them yet.
      const t30 = new Date(Date.parse('2026-01-31T00:00:00Z'));
      const requeue = await step(t30);
      expect(await keys()).toEqual(['mailfleet-1-rsa:active', 'mailfleet-1-ed:active', 'mailfleet-2-rsa:next', 'mailfleet-2-ed:next']);
      expect(await secretKeys()).toEqual(['mailfleet-1-ed.pem', 'mailfleet-1-rsa.pem', 'mailfleet-2-ed.pem', 'mailfleet-2-rsa.pem']);
      expect((await condition('KeysReady')).message).toBe('signing with mailfleet-1-rsa, mailfleet-1-ed; mailfleet-2-rsa, mailfleet-2-ed wait for DNS before they sign');
      expect(requeue).toMatchObject({ requeueAfterMs: 10 * 60_000 });
      await step(new Date(t30.getTime() + 2 * DAY));
      expect(await keys()).toContain('mailfleet-2-rsa:next');
      expect((await condition('DNSVerified')).status).toBe('False');

      // DNS serves the new records: signing switches once their TTL (300 s) has passed.
      await serve((await read()).status!.records!);
      const served = new Date(t30.getTime() + 3 * DAY);
      await step(served);
      expect(await keys()).toContain('mailfleet-2-rsa:next');
      await step(new Date(served.getTime() + 299_000));
      expect(await keys()).toContain('mailfleet-2-rsa:next');
      await step(new Date(served.getTime() + 300_000));
      expect(await keys()).toEqual(['mailfleet-1-rsa:retiring', 'mailfleet-1-ed:retiring', 'mailfleet-2-rsa:active', 'mailfleet-2-ed:active']);
      expect((await read()).status!.activeSelectors).toBe('mailfleet-2-rsa,mailfleet-2-ed');

      // The old keys stay published through the overlap, then leave the Secret and the records.
      await step(new Date(served.getTime() + 300_000 + 7 * DAY - 1000));
      expect(await secretKeys()).toHaveLength(4);
      await step(new Date(served.getTime() + 300_000 + 7 * DAY));
      expect(await keys()).toEqual(['mailfleet-2-rsa:active', 'mailfleet-2-ed:active']);
      expect(await secretKeys()).toEqual(['mailfleet-2-ed.pem', 'mailfleet-2-rsa.pem']);
      expect((await read()).status!.records!.filter((r) => r.purpose === 'dkim').map((r) => r.selector)).toEqual(['mailfleet-2-rsa', 'mailfleet-2-ed']);

      // Every step left an Event, as `kubectl describe senderdomain` shows them (KubeEvents
      // creates them without waiting: poll the API server until they are all there).
      const wanted = ['KeyCreated', 'DNSVerified', 'RotationStarted', 'RecordServed', 'SigningSwitched', 'KeyRetired'];
      const reasons = async () => (await admin.list<AnyObject & { reason: string; involvedObject: { name: string } }>('v1', 'Event', ns)).items.filter((e) => e.involvedObject.name === 'example-test').map((e) => e.reason);
      await eventually(async () => {
        const seen = await reasons();
        return wanted.every((r) => seen.includes(r));
      }, `Events ${wanted.join(', ')}`);
      expect(eventErrors).toEqual([]);
    });
  });
});
