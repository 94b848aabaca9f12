/**
 * What a mistake in a manifest meets on a real cluster, as docs/operator.md#field-validation
 * says: kubectl (v1.33, the layer package) against the v1.20 API server, which has neither
 * server-side field validation (1.25+) nor CEL (1.25+, stripped from the chart's CRDs here),
 * and the operator as the last line for what the server let through.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import YAML from 'yaml';
import { parseConfig } from '../../relay/config.js';
import type { AnyObject } from '../../operator/kube/client.js';
import type { RunningOperator } from '../../operator/main.js';
import { adminClient, describeCluster, ensureNamespace, eventually, installChartOnce, kubectl, startChartOperator, type ChartInstall } from './harness.js';

type Obj = AnyObject & { spec?: Record<string, unknown>; status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } };

describeCluster('field validation on a real kube-apiserver', (cluster) => {
  let chart: ChartInstall;
  const ns = `mf-validation-${process.pid}`;
  let operator: RunningOperator | undefined;
  beforeAll(async () => {
    chart = await installChartOnce(cluster());
    await ensureNamespace(cluster(), ns);
  });
  afterAll(async () => {
    await operator?.stop();
    await adminClient(cluster()).delete({ apiVersion: 'v1', kind: 'Namespace', name: ns });
  });
  const relay = (name: string, spec: object) => JSON.stringify({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', metadata: { name, namespace: ns }, spec });
  const get = (name: string) => adminClient(cluster()).get<Obj>({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', namespace: ns, name });

  it('v1.20 has no server-side field validation: kubectl (--validate=strict, its default) refuses a misspelled field on the client from the published OpenAPI; with --validate=false the server drops it; a server-side apply is refused by the server itself', async () => {
    // kubectl's client-side check reads the OpenAPI the server publishes, which takes the CRD's
    // schema a few seconds after the CRD is established: until then nothing is checked.
    await eventually(async () => JSON.stringify(await adminClient(cluster()).raw('GET', '/openapi/v2')).includes('io.mailfleet.v1alpha1.MailRelay'), 'the MailRelay schema in /openapi/v2');
    const typo = { autoscaling: { enabled: true, maxReplica: 4 } };
    const strict = await kubectl(cluster(), ['apply', '-f', '-'], { input: relay('typo', typo) });
    expect(strict.code).not.toBe(0);
    expect(strict.stderr).toContain('unknown field "maxReplica" in io.mailfleet.v1alpha1.MailRelay.spec.autoscaling');
    expect(await get('typo')).toBeUndefined();

    const loose = await kubectl(cluster(), ['apply', '--validate=false', '-f', '-'], { input: relay('typo', typo) });
    expect(loose.code, loose.stderr).toBe(0);
    const stored = await get('typo');
    // Pruned, and the default stands: the user meant 4 and gets 10, with no word about it.
    expect(stored?.spec?.autoscaling).toMatchObject({ enabled: true, maxReplicas: 10 });
    expect(stored?.spec?.autoscaling).not.toHaveProperty('maxReplica');

    // The server's own verdict on a server-side apply (what a GitOps controller gets), without kubectl's check first.
    const serverSide = await kubectl(cluster(), ['apply', '--server-side', '--validate=false', '-f', '-'], { input: relay('typo-ssa', typo) });
    expect(serverSide.code).not.toBe(0);
    expect(serverSide.stderr).toContain('.spec.autoscaling.maxReplica: field not declared in schema');
    expect(await get('typo-ssa')).toBeUndefined();
  });

  it('minReplicas above maxReplicas, which v1.20 stores (its CRD has no CEL rule), is reported by the operator: Degraded and not Ready, InvalidSpec, naming the field', async () => {
    const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: relay('inverted', { autoscaling: { enabled: true, minReplicas: 5, maxReplicas: 3 } }) });
    expect(applied.code, applied.stderr).toBe(0);
    operator = await startChartOperator(cluster(), chart, ns);
    const message = 'spec.autoscaling.minReplicas: minReplicas must not exceed maxReplicas';
    await eventually(async () => (await get('inverted'))?.status?.conditions?.find((c) => c.type === 'Degraded')?.message === message, 'Degraded for the inverted replicas');
    const conditions = (await get('inverted'))?.status?.conditions;
    expect(conditions?.find((c) => c.type === 'Degraded')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    expect(conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'InvalidSpec', message });
    expect(await adminClient(cluster()).get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name: 'inverted' })).toBeUndefined();
  });

  const m365 = { provider: 'microsoft', user: 'relay@contoso.com', tenant: 'contoso.onmicrosoft.com', clientId: '11111111-2222-3333-4444-555555555555', credential: 'certificate', secretName: 'm365-cert' };
  const oauth2Spec = (oauth2: object, extra: object = {}) => ({ delivery: { route: 'smarthost', smarthost: { host: 'smtp.office365.com', oauth2, ...extra } } });
  const oauth2Relay = (name: string, oauth2: object, extra: object = {}) => relay(name, oauth2Spec(oauth2, extra));

  it('a MailRelay with smarthost oauth2 is stored whole (nothing pruned), and the operator mounts its kubernetes.io/tls Secret and renders delivery.route.oauth2', async () => {
    const secret = { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'm365-cert', namespace: ns }, stringData: { 'tls.crt': '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n', 'tls.key': '-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n' } };
    const created = await kubectl(cluster(), ['apply', '-f', '-'], { input: JSON.stringify(secret) });
    expect(created.code, created.stderr).toBe(0);
    // A listener without TLS or users, so the oauth2 Secret is the only one the relay waits for.
    const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: relay('m365', { ...oauth2Spec(m365), listeners: [{ name: 'smtp', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['10.0.0.0/8'] }] }) });
    expect(applied.code, applied.stderr).toBe(0);
    expect(((await get('m365'))?.spec?.delivery as { smarthost?: unknown }).smarthost).toEqual({ host: 'smtp.office365.com', port: 587, tls: 'starttls', oauth2: m365 });
    operator ??= await startChartOperator(cluster(), chart, ns);
    const deployment = () => adminClient(cluster()).get<AnyObject & { spec: { template: { spec: { volumes: { name: string; secret?: unknown }[]; containers: { volumeMounts: { name: string }[] }[] } } } }>({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name: 'm365' });
    await eventually(async () => !!(await deployment()), 'the Deployment of MailRelay m365');
    const pod = (await deployment())!.spec.template.spec;
    expect(pod.volumes.find((v) => v.name === 'smarthost-oauth2')).toEqual({ name: 'smarthost-oauth2', secret: { secretName: 'm365-cert', defaultMode: 0o440, items: [{ key: 'tls.crt', path: 'tls.crt' }, { key: 'tls.key', path: 'tls.key' }] } });
    expect(pod.containers[0]!.volumeMounts).toContainEqual({ name: 'smarthost-oauth2', mountPath: '/etc/mailfleet/smarthost-oauth2', readOnly: true });
    const config = await adminClient(cluster()).get<AnyObject & { data: Record<string, string> }>({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns, name: 'm365-config' });
    expect(config?.data['relay.yaml']).toContain('certificateFile: /etc/mailfleet/smarthost-oauth2/tls.crt');
    expect(config?.data['relay.yaml']).toContain('privateKeyFile: /etc/mailfleet/smarthost-oauth2/tls.key');
  });

  it('oauth2 rules v1.20 cannot check (its CRD has no CEL): stored, and reported by the operator as InvalidSpec naming the field', async () => {
    const cases = [
      ['both-credentials', oauth2Relay('both-credentials', m365, { credentialsSecretName: 'ses' }), 'spec.delivery.smarthost.oauth2: give either credentialsSecretName or oauth2, not both'],
      ['no-tenant', oauth2Relay('no-tenant', { ...m365, tenant: undefined }), 'spec.delivery.smarthost.oauth2.tenant: provider microsoft needs tenant and clientId'],
      ['google-secret', oauth2Relay('google-secret', { provider: 'google', user: 'relay@example.com', credential: 'clientSecret', secretName: 'sa' }), 'spec.delivery.smarthost.oauth2.credential: credential serviceAccount is for provider google, and google takes only it'],
    ] as const;
    for (const [, manifest] of cases) {
      const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: manifest });
      expect(applied.code, applied.stderr).toBe(0);
    }
    operator ??= await startChartOperator(cluster(), chart, ns);
    for (const [name, , message] of cases) {
      await eventually(async () => (await get(name))?.status?.conditions?.find((c) => c.type === 'Degraded')?.message === message, `InvalidSpec for ${name}`);
      expect((await get(name))?.status?.conditions?.find((c) => c.type === 'Degraded')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    }
    // A value a structural schema checks (the enum) is refused by v1.20 itself.
    const refused = await kubectl(cluster(), ['apply', '--validate=false', '-f', '-'], { input: oauth2Relay('bad-provider', { ...m365, provider: 'entra' }) });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('spec.delivery.smarthost.oauth2.provider: Unsupported value: "entra"');
  });

  // Webhooks: the Secrets their keys come from, a SenderDomain whose webhook the relay takes in.
  const key = (c: string) => c.repeat(44);
  const secret = (name: string, data: Record<string, string>) => JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, stringData: data });
  const plain = { listeners: [{ name: 'smtp', port: 2525, tls: 'none', auth: 'none', trustedNetworks: ['10.0.0.0/8'] }] };
  const crm = { name: 'crm', url: 'https://crm.example.com/hooks/mail', secretName: 'crm-keys', types: ['delivered', 'bounced'], timeout: '30s', batchSize: 50, senderDomains: ['example.com'] };
  const relayConfig = async (name: string) => (await adminClient(cluster()).get<AnyObject & { data: Record<string, string> }>({ apiVersion: 'v1', kind: 'ConfigMap', namespace: ns, name: `${name}-config` }))?.data['relay.yaml'] ?? '';

  it('a MailRelay with spec.events.webhooks is stored whole; the operator mounts the Secret and renders a signing key per Secret key, a SenderDomain\'s webhook beside it, and follows a key added for rotation', async () => {
    for (const manifest of [
      secret('crm-keys', { 'k2026-12': key('a') }),
      secret('shop-keys', { current: key('b') }),
      JSON.stringify({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', metadata: { name: 'shop-example', namespace: ns, labels: { relay: 'hooks' } }, spec: { domain: 'shop.example.com', verification: { resolvers: ['127.0.0.1:9'] }, events: { webhooks: [{ name: 'orders', url: 'http://orders.shop.svc:8080/events', secretName: 'shop-keys' }] } } }),
      relay('hooks', { ...plain, senderDomainSelector: { matchLabels: { relay: 'hooks' } }, events: { webhooks: [crm], maxOutboxBytes: '64Mi' } }),
    ]) {
      const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: manifest });
      expect(applied.code, applied.stderr).toBe(0);
    }
    expect((await get('hooks'))?.spec?.events).toEqual({ webhooks: [crm], maxOutboxBytes: '64Mi' });
    operator ??= await startChartOperator(cluster(), chart, ns);
    const deployment = () => adminClient(cluster()).get<AnyObject & { spec: { template: { spec: { volumes: { name: string; secret?: unknown }[]; containers: { volumeMounts: { name: string }[] }[] } } } }>({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name: 'hooks' });
    await eventually(async () => !!(await deployment()), 'the Deployment of MailRelay hooks');
    const pod = (await deployment())!.spec.template.spec;
    expect(pod.volumes).toContainEqual({ name: 'wh-crm', secret: { secretName: 'crm-keys', defaultMode: 0o440 } });
    expect(pod.volumes).toContainEqual({ name: 'wh-sd-shop-example-orders', secret: { secretName: 'shop-keys', defaultMode: 0o440 } });
    expect(pod.containers[0]!.volumeMounts).toContainEqual({ name: 'wh-crm', mountPath: '/etc/mailfleet/webhooks/crm', readOnly: true });
    const config = await relayConfig('hooks');
    expect(config).toContain('secretFile: /etc/mailfleet/webhooks/crm/k2026-12');
    expect(config).toContain('name: sd-shop-example-orders');
    expect(config).toContain('secretFile: /etc/mailfleet/webhooks/sd-shop-example-orders/current');
    expect(config).toContain('maxOutboxBytes: 67108864');

    // Rotation: a key added to the Secret is rendered (within the 60 s resync: the Secret's watch, or the Deployment's status, requeues the relay).
    const rotated = await kubectl(cluster(), ['apply', '-f', '-'], { input: secret('crm-keys', { 'k2026-12': key('a'), 'k2027-06': key('c') }) });
    expect(rotated.code, rotated.stderr).toBe(0);
    await eventually(async () => (await relayConfig('hooks')).includes('secretFile: /etc/mailfleet/webhooks/crm/k2027-06'), 'the new key in the relay config');
  });

  it('webhooks v1.20 refuses (a duplicate name, a URL that is not http(s)), those it stores and the operator reports (a reserved name: InvalidSpec), and a Secret key that cannot be a key id (WebhookKeysInvalid)', async () => {
    const refused = async (name: string, webhooks: object[], words: string) => {
      const r = await kubectl(cluster(), ['apply', '--validate=false', '-f', '-'], { input: relay(name, { ...plain, events: { webhooks } }) });
      expect(r.code, `${name}: ${r.stdout}`).not.toBe(0);
      expect(r.stderr).toContain(words);
      expect(await get(name)).toBeUndefined();
    };
    await refused('hooks-twice', [crm, { ...crm, url: 'https://other.example.com/' }], 'spec.events.webhooks[1]: Duplicate value: map[string]interface {}{"name":"crm"}');
    await refused('hooks-ftp', [{ ...crm, url: 'ftp://crm.example.com/' }], 'spec.events.webhooks.url: Invalid value: "ftp://crm.example.com/"');

    const reserved = await kubectl(cluster(), ['apply', '-f', '-'], { input: relay('hooks-reserved', { ...plain, events: { webhooks: [{ ...crm, name: 'sd-crm' }] } }) });
    expect(reserved.code, reserved.stderr).toBe(0);
    const dotted = [secret('dotted-keys', { 'k2026.12': key('d') }), relay('hooks-dotted', { ...plain, events: { webhooks: [{ ...crm, secretName: 'dotted-keys' }] } })];
    for (const manifest of dotted) {
      const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: manifest });
      expect(applied.code, applied.stderr).toBe(0);
    }
    operator ??= await startChartOperator(cluster(), chart, ns);
    const degraded = async (name: string) => (await get(name))?.status?.conditions?.find((c) => c.type === 'Degraded');
    await eventually(async () => (await degraded('hooks-reserved'))?.reason === 'InvalidSpec', 'InvalidSpec for hooks-reserved');
    expect(await degraded('hooks-reserved')).toMatchObject({ status: 'True', message: 'spec.events.webhooks.0.name: names starting with sd- are kept for the webhooks of SenderDomains' });
    await eventually(async () => (await degraded('hooks-dotted'))?.reason === 'WebhookKeysInvalid', 'WebhookKeysInvalid for hooks-dotted');
    expect((await get('hooks-dotted'))?.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'WebhookKeysInvalid', message: expect.stringContaining('Secret dotted-keys (spec.events.webhooks[crm].secretName): key "k2026.12" cannot be a signing key id') });
    expect(await adminClient(cluster()).get({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name: 'hooks-dotted' })).toBeUndefined();
    // Renamed in the Secret: only the Secret's watch brings the relay round (nothing else of it changes, no Deployment, no retry timer, 60 s resync).
    const fixed = await kubectl(cluster(), ['replace', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'dotted-keys', namespace: ns }, data: { 'k2026-12': Buffer.from(key('d')).toString('base64') } }) });
    expect(fixed.code, fixed.stderr).toBe(0);
    await eventually(async () => (await relayConfig('hooks-dotted')).includes('secretFile: /etc/mailfleet/webhooks/crm/k2026-12'), 'hooks-dotted rendered once its key is renamed');
  });

  // Bounces: a SenderDomain with a return path, a MailRelay with the bounces listener, and one that only sends for the domain.
  type SenderDomainObj = AnyObject & { spec?: Record<string, unknown>; status?: { records?: { name: string; type: string; value: string; purpose: string }[]; warnings?: string[]; conditions?: { type: string; status: string; reason: string; message: string }[] } };
  const senderDomain = (name: string, spec: object, labels: Record<string, string> = {}) => JSON.stringify({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', metadata: { name, namespace: ns, labels }, spec: { verification: { resolvers: ['127.0.0.1:9'] }, ...spec } });
  const getDomain = (name: string) => adminClient(cluster()).get<SenderDomainObj>({ apiVersion: 'mailfleet.io/v1alpha1', kind: 'SenderDomain', namespace: ns, name });
  type PodTemplate = AnyObject & { spec: { template: { spec: { volumes: { name: string; secret?: { secretName: string } }[]; containers: { ports: { name: string; containerPort: number }[]; volumeMounts: { name: string; mountPath: string }[] }[] } } } };
  const getDeployment = (name: string) => adminClient(cluster()).get<PodTemplate>({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: ns, name });
  const sending = { listeners: [{ name: 'smtp', port: 2526, tls: 'none', auth: 'none', trustedNetworks: ['10.0.0.0/8'] }], senderDomainSelector: { matchLabels: { relay: 'returns' } } };

  it('a MailRelay with spec.bounces and a SenderDomain with spec.returnPath are stored whole; the operator makes the namespace\'s key Secret, the Service NAME-bounces on port 25, and mounts the key in both relays that select the domain', async () => {
    const bounces = { enabled: true, service: { type: 'LoadBalancer', annotations: { 'example.com/lb': 'internet-facing' } } };
    for (const manifest of [
      senderDomain('rp-example', { domain: 'rp.example.com', returnPath: 'bounces.rp.example.com' }, { relay: 'returns' }),
      relay('returns', { ...sending, bounces }),
      relay('returns-sender', sending),
    ]) {
      const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: manifest });
      expect(applied.code, applied.stderr).toBe(0);
    }
    expect((await get('returns'))?.spec?.bounces).toEqual(bounces);
    expect((await getDomain('rp-example'))?.spec?.returnPath).toBe('bounces.rp.example.com');
    operator ??= await startChartOperator(cluster(), chart, ns);

    await eventually(async () => !!(await getDeployment('returns')) && !!(await getDeployment('returns-sender')), 'the Deployments of MailRelays returns and returns-sender');
    const key = await adminClient(cluster()).get<AnyObject & { data: Record<string, string>; metadata: { ownerReferences?: unknown[] } }>({ apiVersion: 'v1', kind: 'Secret', namespace: ns, name: 'mailfleet-bounces-key' });
    expect(Buffer.from(key!.data.key!, 'base64').toString()).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(key!.metadata.ownerReferences).toBeUndefined();
    for (const name of ['returns', 'returns-sender']) {
      const pod = (await getDeployment(name))!.spec.template.spec;
      expect(pod.volumes, name).toContainEqual({ name: 'bounces-key', secret: { secretName: 'mailfleet-bounces-key', defaultMode: 0o440, items: [{ key: 'key', path: 'key' }] } });
      expect(pod.containers[0]!.volumeMounts, name).toContainEqual({ name: 'bounces-key', mountPath: '/etc/mailfleet/bounces', readOnly: true });
      expect(await relayConfig(name), name).toContain('returnPath: bounces.rp.example.com');
      expect(await relayConfig(name), name).toContain('keyFile: /etc/mailfleet/bounces/key');
    }
    expect((await getDeployment('returns'))!.spec.template.spec.containers[0]!.ports).toContainEqual({ name: 'bounces', containerPort: 2525, protocol: 'TCP' });
    expect(await relayConfig('returns')).toContain('role: bounces');
    expect(await relayConfig('returns-sender')).not.toContain('role: bounces');
    const service = await adminClient(cluster()).get<AnyObject & { spec: { type: string; ports: { name: string; port: number; targetPort: string }[] }; metadata: { annotations?: Record<string, string>; ownerReferences?: { kind: string; name: string }[] } }>({ apiVersion: 'v1', kind: 'Service', namespace: ns, name: 'returns-bounces' });
    expect(service?.spec.type).toBe('LoadBalancer');
    expect(service?.spec.ports).toMatchObject([{ name: 'smtp', port: 25, targetPort: 'bounces', protocol: 'TCP' }]);
    expect(service?.metadata.annotations).toMatchObject({ 'example.com/lb': 'internet-facing' });
    expect(service?.metadata.ownerReferences).toMatchObject([{ kind: 'MailRelay', name: 'returns' }]);
    expect(await adminClient(cluster()).get({ apiVersion: 'v1', kind: 'Service', namespace: ns, name: 'returns-sender-bounces' })).toBeUndefined();

    // The SenderDomain's status: the return path's SPF record, and the MX record it needs as a warning.
    await eventually(async () => !!(await getDomain('rp-example'))?.status?.records?.some((r) => r.name === 'bounces.rp.example.com'), 'the return path\'s record in status.records');
    const status = (await getDomain('rp-example'))!.status!;
    expect(status.records!.find((r) => r.name === 'bounces.rp.example.com')).toMatchObject({ type: 'TXT', purpose: 'spf', value: status.records!.find((r) => r.name === 'rp.example.com')!.value });
    expect(status.warnings).toContainEqual(expect.stringMatching(/^bounces\.rp\.example\.com needs an MX record/));
  });

  it('a returnPath outside spec.domain, which v1.20 stores (no CEL), and a listener on the bounces port are reported by the operator as InvalidSpec naming the field; a returnPath that is no domain name is refused by v1.20 itself', async () => {
    for (const manifest of [senderDomain('rp-outside', { domain: 'rp.example.com', returnPath: 'bounces.example.net' }), relay('returns-clash', { listeners: [{ name: 'smtp', port: 2525, tls: 'none', auth: 'none' }], bounces: { enabled: true } })]) {
      const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: manifest });
      expect(applied.code, applied.stderr).toBe(0);
    }
    operator ??= await startChartOperator(cluster(), chart, ns);
    const ready = async () => (await getDomain('rp-outside'))?.status?.conditions?.find((c) => c.type === 'Ready');
    await eventually(async () => (await ready())?.reason === 'InvalidSpec', 'InvalidSpec for rp-outside');
    expect(await ready()).toMatchObject({ status: 'False', message: 'spec.returnPath: returnPath must be spec.domain or a subdomain of it (e.g. bounces.example.com), so SPF stays aligned for DMARC' });
    const degraded = async () => (await get('returns-clash'))?.status?.conditions?.find((c) => c.type === 'Degraded');
    await eventually(async () => (await degraded())?.reason === 'InvalidSpec', 'InvalidSpec for returns-clash');
    expect(await degraded()).toMatchObject({ status: 'True', message: "spec.listeners.0.port: port 2525 is the bounces listener's (spec.bounces)" });
    expect(await getDeployment('returns-clash')).toBeUndefined();
    const refused = await kubectl(cluster(), ['apply', '--validate=false', '-f', '-'], { input: senderDomain('rp-upper', { domain: 'rp.example.com', returnPath: 'Bounces.rp.example.com' }) });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('spec.returnPath: Invalid value: "Bounces.rp.example.com"');
  });

  it("a SenderDomain whose object name has dots gets a DKIM volume the API server takes; a MailRelay's spec.bounces.mxHost puts the return path's MX record in status.records", async () => {
    for (const manifest of [
      senderDomain('news.dotted.example.com', { domain: 'news.dotted.example.com', returnPath: 'bounces.news.dotted.example.com' }, { relay: 'dotted' }),
      relay('dotted', { ...sending, senderDomainSelector: { matchLabels: { relay: 'dotted' } }, bounces: { enabled: true, mxHost: 'bounces-mx.dotted.example.com' } }),
    ]) {
      const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: manifest });
      expect(applied.code, applied.stderr).toBe(0);
    }
    operator ??= await startChartOperator(cluster(), chart, ns);
    // The DKIM Secret exists once the SenderDomain has keys; then the relay mounts it under a hashed volume name.
    await eventually(async () => !!(await getDeployment('dotted'))?.spec.template.spec.volumes.some((v) => (v as { name: string }).name.startsWith('dkim-')), 'the Deployment of MailRelay dotted with its DKIM volume');
    const volume = (await getDeployment('dotted'))!.spec.template.spec.volumes.map((v) => (v as { name: string }).name).find((n) => n.startsWith('dkim-'))!;
    expect(volume).toMatch(/^dkim-[0-9a-f]{20}$/);
    await eventually(async () => !!(await getDomain('news.dotted.example.com'))?.status?.records?.some((r) => r.type === 'MX'), "the return path's MX in status.records");
    const status = (await getDomain('news.dotted.example.com'))!.status!;
    expect(status.records!.find((r) => r.type === 'MX')).toMatchObject({ name: 'bounces.news.dotted.example.com', value: '10 bounces-mx.dotted.example.com', purpose: 'mx' });
    expect(status.warnings ?? []).not.toContainEqual(expect.stringMatching(/needs an MX record/));
  });

  // One-click unsubscribe: a MailRelay with the Ingress, a SenderDomain with spec.unsubscribe; and one relay without an Ingress.
  it('a MailRelay with spec.links.ingress and a SenderDomain with spec.unsubscribe are stored whole; the operator makes the namespace\'s links key, the Service NAME-links, the Ingress with the TLS host, mounts the key, and renders a config the relay\'s own loader takes', async () => {
    const links = { publicHost: 'ingress.example.net', ingress: { enabled: true, className: 'nginx', annotations: { 'cert-manager.io/cluster-issuer': 'letsencrypt' } } };
    const unsubscribe = { url: 'https://go.unsub.example.com', mailto: true };
    for (const manifest of [
      senderDomain('unsub-example', { domain: 'unsub.example.com', returnPath: 'bounces.unsub.example.com', unsubscribe, tracking: { url: 'https://t.unsub.example.com', opens: false } }, { relay: 'unsub' }),
      relay('unsub', { ...sending, senderDomainSelector: { matchLabels: { relay: 'unsub' } }, links }),
      senderDomain('unsub-plain', { domain: 'plain.example.com', unsubscribe: { url: 'https://links.plain.example.com' } }, { relay: 'unsub-plain' }),
      relay('unsub-plain', { ...sending, senderDomainSelector: { matchLabels: { relay: 'unsub-plain' } } }),
    ]) {
      const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: manifest });
      expect(applied.code, applied.stderr).toBe(0);
    }
    expect((await get('unsub'))?.spec?.links).toEqual({ enabled: false, service: { type: 'ClusterIP' }, publicHost: 'ingress.example.net', ingress: links.ingress });
    expect((await getDomain('unsub-example'))?.spec?.unsubscribe).toEqual(unsubscribe);
    operator ??= await startChartOperator(cluster(), chart, ns);

    await eventually(async () => (await relayConfig('unsub')).includes('links:') && (await relayConfig('unsub-plain')).includes('links:'), 'the relay configs of unsub and unsub-plain with links');
    const key = await adminClient(cluster()).get<AnyObject & { data: Record<string, string>; metadata: { ownerReferences?: unknown[] } }>({ apiVersion: 'v1', kind: 'Secret', namespace: ns, name: 'mailfleet-links-key' });
    expect(Buffer.from(key!.data.key!, 'base64').toString()).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(key!.metadata.ownerReferences).toBeUndefined();
    const config = parseConfig(YAML.parse(await relayConfig('unsub')), '/');
    expect(config.links).toEqual({ keyFile: '/etc/mailfleet/links/key', address: '0.0.0.0', port: 8090 });
    expect(config.senderDomains.map((d) => [d.domain, d.returnPath, d.unsubscribe, d.tracking])).toEqual([['unsub.example.com', 'bounces.unsub.example.com', unsubscribe, { url: 'https://t.unsub.example.com', opens: false, clicks: true, excludeDomains: [] }]]);
    expect(parseConfig(YAML.parse(await relayConfig('unsub-plain')), '/').senderDomains[0]!.unsubscribe).toEqual({ url: 'https://links.plain.example.com' });
    for (const name of ['unsub', 'unsub-plain']) {
      const pod = (await getDeployment(name))!.spec.template.spec;
      expect(pod.volumes, name).toContainEqual({ name: 'links-key', secret: { secretName: 'mailfleet-links-key', defaultMode: 0o440, items: [{ key: 'key', path: 'key' }] } });
      expect(pod.containers[0]!.volumeMounts, name).toContainEqual({ name: 'links-key', mountPath: '/etc/mailfleet/links', readOnly: true });
      expect(pod.containers[0]!.ports, name).toContainEqual({ name: 'links', containerPort: 8090, protocol: 'TCP' });
      const service = await adminClient(cluster()).get<AnyObject & { spec: { type: string; ports: unknown[] } }>({ apiVersion: 'v1', kind: 'Service', namespace: ns, name: `${name}-links` });
      expect(service?.spec.type, name).toBe('ClusterIP');
      expect(service?.spec.ports, name).toEqual([{ name: 'http', port: 80, targetPort: 'links', protocol: 'TCP' }]);
    }
    type IngressObj = AnyObject & { metadata: { annotations?: Record<string, string>; ownerReferences?: { kind: string; name: string }[] }; spec: Record<string, unknown> };
    const ingress = (name: string) => adminClient(cluster()).get<IngressObj>({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', namespace: ns, name });
    await eventually(async () => !!(await ingress('unsub-links')), 'the Ingress unsub-links');
    const made = (await ingress('unsub-links'))!;
    expect(made.metadata.annotations).toMatchObject({ 'cert-manager.io/cluster-issuer': 'letsencrypt' });
    expect(made.metadata.ownerReferences).toMatchObject([{ kind: 'MailRelay', name: 'unsub' }]);
    expect(made.spec).toEqual({
      ingressClassName: 'nginx',
      tls: [{ hosts: ['go.unsub.example.com', 't.unsub.example.com'], secretName: 'unsub-links-tls' }],
      rules: ['go.unsub.example.com', 't.unsub.example.com'].map((host) => ({ host, http: { paths: ['/u/', '/o/', '/c/'].map((path) => ({ path, pathType: 'Prefix', backend: { service: { name: 'unsub-links', port: { name: 'http' } } } })) } })),
    });
    expect(await ingress('unsub-plain-links')).toBeUndefined();
    // The link hosts under the domain get a CNAME to the MailRelay's spec.links.publicHost in status.records.
    type RecordObj = { name: string; type: string; value: string };
    await eventually(async () => ((await getDomain('unsub-example'))?.status as { records?: RecordObj[] } | undefined)?.records?.some((r) => r.type === 'CNAME') ?? false, 'the CNAME records of unsub-example');
    expect(((await getDomain('unsub-example'))!.status as { records: RecordObj[] }).records.filter((r) => r.type === 'CNAME').map((r) => `${r.name} ${r.value}`)).toEqual(['go.unsub.example.com ingress.example.net', 't.unsub.example.com ingress.example.net']);
    // The domain no Ingress serves says where its URL must lead; the other says nothing of links.
    await eventually(async () => !!(await getDomain('unsub-plain'))?.status?.warnings?.some((w) => w.includes('spec.unsubscribe.url')), 'the unsubscribe warning of unsub-plain');
    expect((await getDomain('unsub-plain'))!.status!.warnings).toContainEqual(expect.stringContaining('the URL must reach Service unsub-plain-links (port 80)'));
    await eventually(async () => !!(await getDomain('unsub-example'))?.status?.warnings, 'the warnings of unsub-example');
    expect((await getDomain('unsub-example'))!.status!.warnings!.filter((w) => w.includes('spec.unsubscribe.url'))).toEqual([]);

    // The Ingress turned off: the operator deletes it (the domain's links still need the Service), and the domain is warned.
    const off = await kubectl(cluster(), ['apply', '-f', '-'], { input: relay('unsub', { ...sending, senderDomainSelector: { matchLabels: { relay: 'unsub' } } }) });
    expect(off.code, off.stderr).toBe(0);
    await eventually(async () => !(await ingress('unsub-links')), 'the Ingress unsub-links deleted');
    expect(await adminClient(cluster()).get({ apiVersion: 'v1', kind: 'Service', namespace: ns, name: 'unsub-links' })).toBeDefined();
    await eventually(async () => !!(await getDomain('unsub-example'))?.status?.warnings?.some((w) => w.includes('the URL must reach Service unsub-links (port 80)')), 'the unsubscribe warning of unsub-example');
  });

  it('an unsubscribe mailto without a returnPath, which v1.20 stores (no CEL), is InvalidSpec naming the field; a URL that is not https is refused by v1.20 itself', async () => {
    const applied = await kubectl(cluster(), ['apply', '-f', '-'], { input: senderDomain('unsub-mailto', { domain: 'mailto.example.com', unsubscribe: { url: 'https://links.mailto.example.com', mailto: true } }) });
    expect(applied.code, applied.stderr).toBe(0);
    operator ??= await startChartOperator(cluster(), chart, ns);
    const ready = async () => (await getDomain('unsub-mailto'))?.status?.conditions?.find((c) => c.type === 'Ready');
    await eventually(async () => (await ready())?.reason === 'InvalidSpec', 'InvalidSpec for unsub-mailto');
    expect(await ready()).toMatchObject({ status: 'False', message: 'spec.unsubscribe.mailto: unsubscribe.mailto needs spec.returnPath: the address is unsubscribe@RETURN-PATH, which a bounces listener takes; set returnPath or leave mailto out' });
    const refused = await kubectl(cluster(), ['apply', '--validate=false', '-f', '-'], { input: senderDomain('unsub-http', { domain: 'mailto.example.com', unsubscribe: { url: 'http://links.mailto.example.com' } }) });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('spec.unsubscribe.url: Invalid value: "http://links.mailto.example.com"');
  });
});
