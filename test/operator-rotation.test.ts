/**
 * A DKIM rotation walked with a fake clock: the SenderDomain controller against the API
 * emulator, checking its records against a real DNS server (dnsmasq) that serves, or does not
 * yet serve, the new key's record.
 */
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { senderDomainSpecSchema, type SenderDomain } from '../operator/api/v1alpha1.js';
import { KubeEvents } from '../operator/controllers/events.js';
import { SenderDomainController } from '../operator/controllers/senderdomain.js';
import { KubeClient } from '../operator/kube/client.js';
import { verifyRecords } from '../relay/records-verify.js';
import type { KubeEmulator } from './kube/emulator.js';
import { describePeer } from './peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq, type Dnsmasq } from './peers/dnsmasq.js';
import { freePort } from './peers/ports.js';
import { startCluster } from './support/operator.js';

const DAY = 86400_000;

describePeer('DKIM rotation with a fake clock and dnsmasq', DNSMASQ_BINARIES, () => {
  let cluster: KubeEmulator;
  let dns: Dnsmasq | undefined;
  let dnsPort: number;
  beforeAll(async () => {
    cluster = await startCluster();
    dnsPort = await freePort();
  });
  afterAll(async () => {
    await dns?.stop();
    await cluster?.stop();
  });

  /** dnsmasq serving exactly these TXT records (restarted on the same port). */
  async function serve(records: { name: string; value: string }[]) {
    await dns?.stop();
    dns = await startDnsmasq({ port: dnsPort, txt: records.map((r) => ({ name: r.name, values: [r.value] })) });
  }

  it('makes the next key, waits for DNS and its TTL, switches signing, keeps the old key through the overlap, then retires it', async () => {
    const client = new KubeClient(cluster.kubeConfig());
    let now = new Date('2026-01-01T00:00:00Z');
    const controller = new SenderDomainController({
      client,
      events: new KubeEvents(client, () => undefined, () => now.getTime()),
      log: pino({ level: 'silent' }),
      now: () => now,
      relays: () => [],
      secret: () => undefined,
      dnsEndpoints: () => false,
      verify: (records, servers) => verifyRecords(records, { servers, timeoutMs: 1000 }),
    });
    await client.apply({
      apiVersion: 'mailfleet.io/v1alpha1',
      kind: 'SenderDomain',
      metadata: { name: 'example-test', namespace: 'mail' },
      spec: { domain: 'example.test', dkim: { rotation: { period: '30d', overlap: '7d' } }, dnsEndpoint: { ttl: 300 }, verification: { resolvers: [`127.0.0.1:${dnsPort}`], interval: '10m' } },
    });
    const read = async () => (await client.get<never>({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', namespace: 'mail', name: 'example-test' })) as unknown as SenderDomain;
    const step = async (at: Date) => {
      now = at;
      const sd = await read();
      return controller.reconcile({ ...sd, spec: senderDomainSpecSchema.parse(sd.spec) });
    };
    const keys = async () => (await read()).status!.keys!.map((k) => `${k.selector}:${k.state}`);
    const condition = async (type: string) => (await read()).status!.conditions!.find((c) => c.type === type)!;
    const secretKeys = () => Object.keys((cluster.get({ apiVersion: 'v1', kind: 'Secret', namespace: 'mail', name: 'example-test-dkim' }) as unknown as { data: object }).data).sort();

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
    expect(secretKeys()).toEqual(['mailfleet-1-ed.pem', 'mailfleet-1-rsa.pem', 'mailfleet-2-ed.pem', 'mailfleet-2-rsa.pem']);
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
    expect(secretKeys()).toHaveLength(4);
    await step(new Date(served.getTime() + 300_000 + 7 * DAY));
    expect(await keys()).toEqual(['mailfleet-2-rsa:active', 'mailfleet-2-ed:active']);
    expect(secretKeys()).toEqual(['mailfleet-2-ed.pem', 'mailfleet-2-rsa.pem']);
    expect((await read()).status!.records!.filter((r) => r.purpose === 'dkim').map((r) => r.selector)).toEqual(['mailfleet-2-rsa', 'mailfleet-2-ed']);

    // Every step left an Event, as `kubectl describe senderdomain` shows them.
    await new Promise((r) => setTimeout(r, 100));
    const reasons = cluster.list({ apiVersion: 'v1', kind: 'Event', namespace: 'mail' }).map((e) => (e as unknown as { reason: string }).reason);
    for (const reason of ['KeyCreated', 'DNSVerified', 'RotationStarted', 'RecordServed', 'SigningSwitched', 'KeyRetired']) expect(reasons).toContain(reason);
  });
});
