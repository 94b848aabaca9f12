/**
 * BulkSenderReady on a real kube-apiserver v1.20.2: the operator (as the chart's
 * ServiceAccount, with its informers and watches) checks a SenderDomain's records and the
 * forward-confirmed reverse DNS of its MailRelay's egress address against a real DNS server
 * (dnsmasq, restarted on one port to change what it serves: TXT, A and PTR records).
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import type { AnyObject } from '../../operator/kube/client.js';
import { describePeer } from '../peers/availability.js';
import { DNSMASQ_BINARIES, startDnsmasq, type Dnsmasq, type DnsmasqOptions } from '../peers/dnsmasq.js';
import { freePort } from '../peers/ports.js';
import { adminClient, describeCluster, ensureNamespace, eventually, installChartOnce, kubectlApply, startChartOperator, type ChartInstall } from './harness.js';

type Condition = { type: string; status: string; reason: string; message: string };
type Obj = AnyObject & { status?: { conditions?: Condition[]; records?: { name: string; value: string; purpose: string }[] } };

const GROUP = 'mailfleet.io/v1alpha1';

describeCluster('BulkSenderReady on a real kube-apiserver', (cluster) => {
  describePeer('BulkSenderReady with dnsmasq serving TXT, A and PTR records', DNSMASQ_BINARIES, () => {
    let chart: ChartInstall;
    let dns: Dnsmasq | undefined;
    let dnsPort: number;
    const stops: (() => Promise<unknown>)[] = [];
    const ns = `mf-bulk-${process.pid}`;
    beforeAll(async () => {
      chart = await installChartOnce(cluster());
      await ensureNamespace(cluster(), ns);
      dnsPort = await freePort();
    });
    afterEach(async () => {
      for (const stop of stops.splice(0).reverse()) await stop();
    });
    afterAll(async () => {
      await dns?.stop();
      await adminClient(cluster()).delete({ apiVersion: 'v1', kind: 'Namespace', name: ns });
    });

    /** dnsmasq serving exactly this (restarted on the same port). */
    async function serve(opts: DnsmasqOptions) {
      await dns?.stop();
      dns = await startDnsmasq({ ...opts, port: dnsPort });
    }
    const senderDomain = (spec: object = {}) => ({
      apiVersion: GROUP,
      kind: 'SenderDomain',
      metadata: { name: 'example-test', namespace: ns, labels: { 'mailfleet.io/relay': 'outbound' } },
      spec: { domain: 'example.test', verification: { resolvers: [`127.0.0.1:${dnsPort}`], interval: '2s' }, ...spec },
    });
    const mailRelay = (egressAddresses: string[]) => ({
      apiVersion: GROUP,
      kind: 'MailRelay',
      metadata: { name: 'out', namespace: ns },
      spec: { hostname: 'mail.example.test', senderDomainSelector: { matchLabels: { 'mailfleet.io/relay': 'outbound' } }, delivery: { route: 'mx', egressAddresses } },
    });
    const read = async () => (await adminClient(cluster()).get<Obj>({ apiVersion: GROUP, kind: 'SenderDomain', namespace: ns, name: 'example-test' }))!;
    const bulk = async () => (await read()).status?.conditions?.find((c) => c.type === 'BulkSenderReady');
    const waitFor = (what: string, holds: (c: Condition) => boolean) => eventually(async () => { const c = await bulk(); return !!c && holds(c); }, what, 30_000, async () => JSON.stringify(await bulk()));

    it('True when the records are served, the PTR of the egress address names a host that resolves back to it, and spec.unsubscribe is set; False naming the check that fails', async () => {
      await serve({});
      const op = await startChartOperator(cluster(), chart, ns);
      stops.push(() => op.stop());
      const unsubscribe = { unsubscribe: { url: 'https://links.example.test' } };
      await kubectlApply(cluster(), [senderDomain(unsubscribe), mailRelay(['203.0.113.7'])] as unknown as AnyObject[]);

      // Nothing published yet: each record check and the PTR fail, each named.
      await waitFor('BulkSenderReady False on an empty DNS', (c) => c.status === 'False' && c.message.includes('DMARC: no record at _dmarc.example.test') && c.message.includes('FCrDNS: 203.0.113.7 has no PTR record'));
      expect(await bulk()).toMatchObject({ reason: 'RequirementsNotMet' });
      const records = (await read()).status!.records!;
      expect(records.find((r) => r.purpose === 'spf')!.value).toContain('ip4:203.0.113.7');

      // The user publishes status.records, and mail.example.test (A 203.0.113.7, and so its PTR).
      const published: DnsmasqOptions = { txt: records.map((r) => ({ name: r.name, values: [r.value] })), hosts: [{ name: 'mail.example.test', address: '203.0.113.7' }] };
      await serve(published);
      await waitFor('BulkSenderReady True', (c) => c.status === 'True');
      expect(await bulk()).toMatchObject({
        reason: 'RequirementsMet',
        message: 'example.test meets the bulk sender requirements of Gmail, Yahoo and Outlook.com: SPF, DKIM and DMARC served; FCrDNS for 203.0.113.7 (mail.example.test); one-click unsubscribe; TLS to the next hop',
      });

      // The provider points the PTR at a host that does not resolve back: found at the next check.
      await serve({ ...published, hosts: [...published.hosts!, { name: 'elsewhere.example.test', address: '198.51.100.1' }], ptr: [{ address: '203.0.113.7', name: 'elsewhere.example.test' }] });
      await waitFor('BulkSenderReady False on the PTR', (c) => c.status === 'False');
      expect((await bulk())!.message).toBe(
        'FCrDNS: the PTR of 203.0.113.7 names elsewhere.example.test, but elsewhere.example.test resolves to 198.51.100.1 (give elsewhere.example.test the A record 203.0.113.7, or ask your provider to point the PTR at a host that has it)',
      );
      await serve(published);
      await waitFor('BulkSenderReady True again', (c) => c.status === 'True');

      // spec.unsubscribe removed: only that check is named.
      await kubectlApply(cluster(), [senderDomain()] as unknown as AnyObject[]);
      await waitFor('BulkSenderReady False without spec.unsubscribe', (c) => c.status === 'False');
      expect((await bulk())!.message).toBe("one-click unsubscribe: spec.unsubscribe is not set (set spec.unsubscribe.url to the public https origin of the relays' links endpoint: docs/operator.md#one-click-unsubscribe)");

      // The MailRelay's egress address changes: the SenderDomain is requeued and the new address looked up at once.
      await kubectlApply(cluster(), [senderDomain(unsubscribe), mailRelay(['203.0.113.9'])] as unknown as AnyObject[]);
      await waitFor('the new egress address checked', (c) => c.message.includes('FCrDNS: 203.0.113.9 has no PTR record'));
      expect((await bulk())!.message).toMatch(/^SPF: example\.test is not the record status\.records recommends: DNS lacks ip4:203\.0\.113\.9; DNS has extra ip4:203\.0\.113\.7/);

      // The relay with no egress address: the check says where to set it.
      await kubectlApply(cluster(), [mailRelay([])] as unknown as AnyObject[]);
      await waitFor('no egress addresses named', (c) => c.message.includes('FCrDNS: MailRelay out has no spec.delivery.egressAddresses (set the public addresses its mail leaves from, after NAT: they cannot be seen from inside the cluster)'));
    });
  });
});
