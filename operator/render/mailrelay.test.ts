/**
 * renderMailRelay and the helpers it exports, on shared fixtures. Over 400 lines as one unit:
 * every case reads the same relay, domain and inputs, and asserts on one pure function.
 */
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import YAML from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../relay/config.js';
import { API_VERSION, mailRelaySpecSchema, senderDomainSpecSchema, type MailRelay, type SenderDomain } from '../api/v1alpha1.js';
import { BOUNCES_KEY_SECRET, dkimVolume, label63, relaySecrets, relayWebhooks, renderMailRelay, type KubeObject, type RelayInputs } from './mailrelay.js';

const relay = (spec: object = {}): MailRelay => ({
  apiVersion: API_VERSION,
  kind: 'MailRelay',
  metadata: { name: 'outbound', namespace: 'mail', uid: 'uid-relay' },
  spec: mailRelaySpecSchema.parse({ tlsSecretName: 'outbound-tls', usersSecretName: 'outbound-users', senderDomainSelector: { matchLabels: { relay: 'outbound' } }, ...spec }),
});
const domain: SenderDomain = {
  apiVersion: API_VERSION,
  kind: 'SenderDomain',
  metadata: { name: 'example-com', namespace: 'mail', uid: 'uid-sd', labels: { relay: 'outbound' } },
  spec: senderDomainSpecSchema.parse({ domain: 'example.com' }),
  status: {
    secretName: 'example-com-dkim',
    keys: [
      { selector: 'mf-2-rsa', algorithm: 'rsa-sha256', state: 'active', createdAt: '2026-01-01T00:00:00Z' },
      { selector: 'mf-1-rsa', algorithm: 'rsa-sha256', state: 'retiring', createdAt: '2025-10-01T00:00:00Z' },
    ],
  },
};
const existing = new Set(['outbound-tls', 'outbound-users', 'example-com-dkim', 'ses', 'outbound-handoff']);
const inputs = (over: Partial<RelayInputs> = {}): RelayInputs => ({ senderDomains: [domain], secretExists: (n) => existing.has(n), secretKeys: () => [], defaultImage: 'ghcr.io/mailfleet/mailfleet:0.1.0', serviceMonitors: false, ...over });

function rendered(r = relay(), i = inputs()) {
  const result = renderMailRelay(r, i);
  if (!result.ok) throw new Error(result.message);
  const byKind = (kind: string, name?: string) => result.objects.find((o) => o.kind === kind && (!name || o.metadata.name === name)) as KubeObject & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- objects read back in assertions
  return { ...result, byKind };
}

describe('renderMailRelay', () => {
  it('renders a relay config the relay itself accepts: ports above 1024, keys and secrets at their mount paths', () => {
    const { config, byKind } = rendered();
    const parsed = parseConfig(YAML.parse(config), '/');
    expect(parsed.listeners.map((l) => [l.name, l.port, l.tls, l.auth])).toEqual([['submission', 10587, 'starttls', 'required']]);
    expect(parsed.tls).toEqual({ certFile: '/etc/mailfleet/tls/tls.crt', keyFile: '/etc/mailfleet/tls/tls.key' });
    expect(parsed.senderDomains[0]!.dkim!.keys).toEqual([
      { selector: 'mf-2-rsa', privateKeyFile: '/etc/mailfleet/dkim/example.com/mf-2-rsa.pem', active: true },
      { selector: 'mf-1-rsa', privateKeyFile: '/etc/mailfleet/dkim/example.com/mf-1-rsa.pem', active: false },
    ]);
    expect(parsed.shutdown.drainTimeout).toBe(55);
    // The relay binds loopback unless told: Prometheus, the kubelet and peers must reach the pod.
    expect(parsed.http.address).toBe('0.0.0.0');
    expect(byKind('ConfigMap').data['relay.yaml']).toBe(config);
    const service = byKind('Service', 'outbound');
    expect(service.spec.ports).toEqual([{ name: 'submission', port: 587, targetPort: 'submission', protocol: 'TCP' }]);
  });

  it('renders a hardened Deployment with probes, the spool on a sized emptyDir and every Secret mounted read-only', () => {
    const { byKind } = rendered(relay({ resources: { requests: { cpu: '100m' } } }));
    const d = byKind('Deployment');
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } });
    expect(c.securityContext).toEqual({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(c.args).toEqual(['relay', '--config', '/etc/mailfleet/config/relay.yaml']);
    expect(c.resources).toEqual({ requests: { cpu: '100m' } });
    expect(pod.volumes).toContainEqual({ name: 'spool', emptyDir: { sizeLimit: '2Gi' } });
    expect(pod.volumes.filter((v: { secret?: unknown }) => v.secret).map((v: { secret: { secretName: string } }) => v.secret.secretName)).toEqual(['outbound-tls', 'outbound-users', 'example-com-dkim', 'outbound-handoff']);
    expect(c.volumeMounts.filter((m: { name: string }) => m.name !== 'spool').every((m: { readOnly: boolean }) => m.readOnly)).toBe(true);
    expect(pod.terminationGracePeriodSeconds).toBe(60);
    expect(pod.topologySpreadConstraints.map((t: { topologyKey: string }) => t.topologyKey)).toEqual(['topology.kubernetes.io/zone', 'kubernetes.io/hostname']);
    expect(d.metadata.ownerReferences).toEqual([{ apiVersion: API_VERSION, kind: 'MailRelay', name: 'outbound', uid: 'uid-relay', controller: true, blockOwnerDeletion: true }]);
  });

  it('produces objects that validate against the Kubernetes OpenAPI schemas', () => {
    const { objects } = rendered(relay({ delivery: { route: 'smarthost', smarthost: { host: 'email-smtp.eu-west-1.amazonaws.com', credentialsSecretName: 'ses' } } }));
    const models: Record<string, new (o: object) => { validate(): void }> = { Deployment, ConfigMap, Service, PodDisruptionBudget };
    for (const o of objects) {
      const Model = models[o.kind];
      expect(Model, o.kind).toBeDefined();
      expect(() => new Model!(o).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
    }
  });

  it('mounts smarthost credentials as username and password files the relay reads', () => {
    const { config, byKind } = rendered(relay({ delivery: { route: 'smarthost', smarthost: { host: 'smtp.sendgrid.net', credentialsSecretName: 'ses' } } }));
    expect(YAML.parse(config).delivery.route).toEqual({ type: 'smarthost', host: 'smtp.sendgrid.net', port: 587, tls: 'starttls', usernameFile: '/etc/mailfleet/upstream/username', passwordFile: '/etc/mailfleet/upstream/password' });
    expect(byKind('Deployment').spec.template.spec.volumes).toContainEqual({ name: 'upstream', secret: { secretName: 'ses', defaultMode: 0o440, items: [{ key: 'username', path: 'username' }, { key: 'password', path: 'password' }] } });
  });

  it('applies nothing half-made: a missing Secret or keyless SenderDomain is named; a config the relay would refuse is explained', () => {
    const missing = renderMailRelay(relay(), inputs({ secretExists: (n) => existing.has(n) && n !== 'outbound-users' }));
    expect(missing).toEqual({ ok: false, reason: 'Missing', message: 'waiting for Secret outbound-users (spec.usersSecretName)' });
    const keyless = renderMailRelay(relay(), inputs({ senderDomains: [{ ...domain, status: {} }] }));
    expect(keyless).toMatchObject({ ok: false, reason: 'Missing', message: expect.stringContaining('DKIM keys of SenderDomain example-com') });
    const invalid = renderMailRelay(relay({ tlsSecretName: undefined }), inputs());
    expect(invalid).toMatchObject({ ok: false, reason: 'Invalid', message: expect.stringMatching(/listeners\.0\.tls: listener "submission" uses TLS/) });
  });

  it('is a pure function: the same inputs give the same objects; a ServiceMonitor only where its CRD exists', () => {
    expect(JSON.stringify(rendered().objects)).toBe(JSON.stringify(rendered().objects));
    expect(rendered().objects.map((o) => o.kind)).toEqual(['ConfigMap', 'Deployment', 'Service', 'Service', 'PodDisruptionBudget']);
    expect(rendered(relay(), inputs({ serviceMonitors: true })).objects.map((o) => o.kind)).toContain('ServiceMonitor');
  });

  it('lists every Secret a relay needs once, with what it is for and who makes it: the Secrets the Deployment mounts, no more', () => {
    const smarthost = relay({ delivery: { route: 'smarthost', smarthost: { host: 'smtp.sendgrid.net', credentialsSecretName: 'ses' } } });
    expect(relaySecrets(smarthost, [domain])).toEqual([
      { name: 'outbound-handoff', for: 'the handoff token the operator makes', madeBy: 'operator' },
      { name: 'outbound-tls', for: 'spec.tlsSecretName', madeBy: 'user' },
      { name: 'outbound-users', for: 'spec.usersSecretName', madeBy: 'user' },
      { name: 'ses', for: 'spec.delivery.smarthost.credentialsSecretName', madeBy: 'user' },
      { name: 'example-com-dkim', for: 'the DKIM keys of SenderDomain example-com', madeBy: 'operator' },
    ]);
    const mounted = (rendered(smarthost).byKind('Deployment').spec.template.spec.volumes as { secret?: { secretName: string } }[]).flatMap((v) => (v.secret ? [v.secret.secretName] : []));
    expect(mounted.sort()).toEqual(relaySecrets(smarthost, [domain]).map((x) => x.name).sort());
    // A domain without keys yet has no Secret to name (the render waits for its keys instead).
    expect(relaySecrets(relay({ usersSecretName: undefined }), [{ ...domain, status: {} }]).map((x) => x.name)).toEqual(['outbound-handoff', 'outbound-tls']);
  });

  it('does not wait for smarthost credentials the route does not use: route mx with credentialsSecretName or oauth2 left in the spec mounts and requires neither', () => {
    for (const smarthost of [
      { host: 'smtp.sendgrid.net', credentialsSecretName: 'gone' },
      { host: 'smtp.office365.com', oauth2: { provider: 'microsoft', user: 'relay@contoso.com', tenant: 'contoso.onmicrosoft.com', clientId: 'c', secretName: 'gone' } },
    ]) {
      const mx = relay({ delivery: { route: 'mx', smarthost } });
      expect(relaySecrets(mx, [domain]).map((x) => x.name)).not.toContain('gone');
      const result = rendered(mx);
      expect((result.byKind('Deployment').spec.template.spec.volumes as { secret?: { secretName: string } }[]).flatMap((v) => (v.secret ? [v.secret.secretName] : []))).not.toContain('gone');
      expect(YAML.parse(result.config).delivery.route.type).toBe('mx');
    }
  });

  describe('smarthost oauth2', () => {
    const m365 = { provider: 'microsoft', user: 'relay@contoso.com', tenant: 'contoso.onmicrosoft.com', clientId: '11111111-2222-3333-4444-555555555555', secretName: 'm365-relay' };
    const oauth2Relay = (oauth2: object, host = 'smtp.office365.com') => relay({ delivery: { route: 'smarthost', smarthost: { host, oauth2 } } });
    const secretVolume = (r: MailRelay) => (rendered(r, inputs({ secretExists: () => true })).byKind('Deployment').spec.template.spec.volumes as { name: string }[]).find((v) => v.name === 'smarthost-oauth2');
    const mount = (r: MailRelay) => (rendered(r, inputs({ secretExists: () => true })).byKind('Deployment').spec.template.spec.containers[0].volumeMounts as { name: string }[]).find((v) => v.name === 'smarthost-oauth2');

    it('Microsoft 365 with a client secret (the default credential): delivery.route.oauth2 with the key as a file, the Secret mounted read-only, a config the relay takes', () => {
      const r = oauth2Relay(m365);
      const { config } = rendered(r, inputs({ secretExists: () => true }));
      expect(YAML.parse(config).delivery.route).toEqual({
        type: 'smarthost',
        host: 'smtp.office365.com',
        port: 587,
        tls: 'starttls',
        oauth2: { provider: 'microsoft', user: 'relay@contoso.com', tenant: 'contoso.onmicrosoft.com', clientId: '11111111-2222-3333-4444-555555555555', clientSecretFile: '/etc/mailfleet/smarthost-oauth2/client-secret' },
      });
      expect(secretVolume(r)).toEqual({ name: 'smarthost-oauth2', secret: { secretName: 'm365-relay', defaultMode: 0o440, items: [{ key: 'client-secret', path: 'client-secret' }] } });
      expect(mount(r)).toEqual({ name: 'smarthost-oauth2', mountPath: '/etc/mailfleet/smarthost-oauth2', readOnly: true });
      expect(parseConfig(YAML.parse(config), '/etc/mailfleet/config').delivery.route).toMatchObject({ type: 'smarthost', oauth2: { clientSecretFile: '/etc/mailfleet/smarthost-oauth2/client-secret' } });
      expect(relaySecrets(r, [])).toContainEqual({ name: 'm365-relay', for: 'spec.delivery.smarthost.oauth2.secretName', madeBy: 'user' });
    });

    it('a certificate (private_key_jwt) from a kubernetes.io/tls Secret: tls.crt and tls.key; a national cloud\'s tokenUrl and a scope are passed on', () => {
      const r = oauth2Relay({ ...m365, credential: 'certificate', tokenUrl: 'https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token', scope: 'https://outlook.office365.us/.default' });
      expect(YAML.parse(rendered(r, inputs({ secretExists: () => true })).config).delivery.route.oauth2).toEqual({
        provider: 'microsoft',
        user: 'relay@contoso.com',
        tenant: 'contoso.onmicrosoft.com',
        clientId: '11111111-2222-3333-4444-555555555555',
        tokenUrl: 'https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token',
        scope: 'https://outlook.office365.us/.default',
        certificateFile: '/etc/mailfleet/smarthost-oauth2/tls.crt',
        privateKeyFile: '/etc/mailfleet/smarthost-oauth2/tls.key',
      });
      expect(secretVolume(r)).toMatchObject({ secret: { items: [{ key: 'tls.crt', path: 'tls.crt' }, { key: 'tls.key', path: 'tls.key' }] } });
    });

    it('Google: the service account key (the default credential for google)', () => {
      const r = oauth2Relay({ provider: 'google', user: 'relay@example.com', secretName: 'gmail-sa' }, 'smtp.gmail.com');
      expect(YAML.parse(rendered(r, inputs({ secretExists: () => true })).config).delivery.route.oauth2).toEqual({ provider: 'google', user: 'relay@example.com', serviceAccountFile: '/etc/mailfleet/smarthost-oauth2/service-account.json' });
      expect(secretVolume(r)).toMatchObject({ secret: { secretName: 'gmail-sa', items: [{ key: 'service-account.json', path: 'service-account.json' }] } });
    });

    it('a missing Secret is Missing and named, as the others', () => {
      expect(renderMailRelay(oauth2Relay(m365), inputs())).toEqual({ ok: false, reason: 'Missing', message: 'waiting for Secret m365-relay (spec.delivery.smarthost.oauth2.secretName)' });
    });

    it('the rendered objects still validate against the Kubernetes OpenAPI schemas', () => {
      for (const o of rendered(oauth2Relay({ ...m365, credential: 'certificate' }), inputs({ secretExists: () => true })).objects) {
        if (o.kind === 'Deployment') expect(() => new Deployment(o as never).validate()).not.toThrow();
      }
    });

    it('the schema refuses what the CRD\'s CEL rules refuse, each at its field', () => {
      const issues = (smarthost: object) => {
        const r = mailRelaySpecSchema.safeParse({ delivery: { route: 'smarthost', smarthost: { host: 'smtp.office365.com', ...smarthost } } });
        return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
      };
      const at = 'delivery.smarthost.oauth2';
      expect(issues({ oauth2: m365 })).toEqual([]);
      expect(issues({ credentialsSecretName: 'ses', oauth2: m365 })).toEqual([`${at}: give either credentialsSecretName or oauth2, not both`]);
      expect(issues({ oauth2: { ...m365, tenant: undefined } })).toEqual([`${at}.tenant: provider microsoft needs tenant and clientId`]);
      expect(issues({ oauth2: { provider: 'generic', user: 'u', clientId: 'c', secretName: 's' } })).toEqual([`${at}.tokenUrl: provider generic needs tokenUrl and clientId`]);
      expect(issues({ oauth2: { provider: 'google', user: 'u', clientId: 'c', secretName: 's' } })).toEqual([`${at}.clientId: provider google takes its client from the service account key, not tenant or clientId`]);
      expect(issues({ oauth2: { ...m365, credential: 'serviceAccount' } })).toEqual([`${at}.credential: credential serviceAccount is for provider google, and google takes only it`]);
      expect(issues({ oauth2: { provider: 'google', user: 'u', secretName: 's', credential: 'clientSecret' } })).toEqual([`${at}.credential: credential serviceAccount is for provider google, and google takes only it`]);
      expect(issues({ oauth2: { ...m365, secretName: undefined } })).toEqual([`${at}.secretName: Invalid input: expected string, received undefined`]);
    });

    it('a config the relay would refuse (a plain-http token endpoint off loopback) is Invalid, naming the field', () => {
      const result = renderMailRelay(oauth2Relay({ provider: 'generic', user: 'u', clientId: 'c', tokenUrl: 'http://tokens.example.com/token', secretName: 's' }), inputs({ secretExists: () => true }));
      expect(result).toMatchObject({ ok: false, reason: 'Invalid', message: expect.stringContaining('delivery.route.oauth2.tokenUrl') });
    });
  });

  describe('events.webhooks', () => {
    const KEY_ROOT = '/etc/mailfleet/webhooks';
    const keysOf: Record<string, string[]> = { 'crm-keys': ['k2026-12', 'k2027_01'], 'audit-keys': ['current'], 'sd-keys': ['a'], 'private-ca': ['ca.crt'] };
    const hooksInputs = (over: Partial<RelayInputs> = {}) =>
      inputs({ secretExists: (n) => existing.has(n) || n in keysOf, secretKeys: (n) => keysOf[n] ?? [], ...over });
    const crm = { name: 'crm', url: 'https://crm.example.com/hooks/mail', secretName: 'crm-keys', types: ['delivered', 'bounced'], timeout: '30s', batchSize: 50, caSecretName: 'private-ca' };
    const audit = { name: 'audit', url: 'http://audit.tools.svc:8080/events', secretName: 'audit-keys', senderDomains: ['example.com'] };
    const withEvents = (events: object) => relay({ events });
    const sdWithHooks = (name = 'example-com', hooks: object[] = [{ name: 'crm', url: 'https://sd.example.net/h', secretName: 'sd-keys' }]): SenderDomain => ({
      ...domain,
      metadata: { ...domain.metadata, name },
      spec: senderDomainSpecSchema.parse({ domain: 'example.com', events: { webhooks: hooks } }),
    });

    it('renders each webhook with one signing key per key of its Secret, at its mount, in a config the relay itself parses', () => {
      const { config, byKind } = rendered(withEvents({ webhooks: [crm, audit], maxOutboxBytes: '64Mi' }), hooksInputs());
      const parsed = parseConfig(YAML.parse(config), '/etc/mailfleet/config');
      expect(parsed.events.maxOutboxBytes).toBe(64 * 1024 * 1024);
      expect(parsed.events.webhooks).toEqual([
        {
          name: 'crm',
          url: 'https://crm.example.com/hooks/mail',
          types: ['delivered', 'bounced'],
          signingKeys: [
            { id: 'k2026-12', secretFile: `${KEY_ROOT}/crm/k2026-12` },
            { id: 'k2027_01', secretFile: `${KEY_ROOT}/crm/k2027_01` },
          ],
          caFile: '/etc/mailfleet/webhook-ca/crm/ca.crt',
          timeout: 30,
          batchSize: 50,
          maxBackoff: 300,
        },
        { name: 'audit', url: 'http://audit.tools.svc:8080/events', senderDomains: ['example.com'], signingKeys: [{ id: 'current', secretFile: `${KEY_ROOT}/audit/current` }], timeout: 10, batchSize: 100, maxBackoff: 300 },
      ]);
      const pod = byKind('Deployment').spec.template.spec;
      expect(pod.volumes).toContainEqual({ name: 'wh-crm', secret: { secretName: 'crm-keys', defaultMode: 0o440 } });
      expect(pod.volumes).toContainEqual({ name: 'whca-crm', secret: { secretName: 'private-ca', defaultMode: 0o440, items: [{ key: 'ca.crt', path: 'ca.crt' }] } });
      expect(pod.containers[0].volumeMounts).toContainEqual({ name: 'wh-crm', mountPath: `${KEY_ROOT}/crm`, readOnly: true });
      expect(pod.containers[0].volumeMounts).toContainEqual({ name: 'wh-audit', mountPath: `${KEY_ROOT}/audit`, readOnly: true });
      expect(() => new Deployment(byKind('Deployment') as never).validate()).not.toThrow();
      // Webhook crm's CA and a webhook named crm-ca each have a volume of their own.
      const both = rendered(withEvents({ webhooks: [crm, { ...audit, name: 'crm-ca' }] }), hooksInputs()).byKind('Deployment').spec.template.spec.volumes as { name: string }[];
      expect(new Set(both.map((v) => v.name)).size).toBe(both.length);
      // No webhooks: no events section at all (the relay's defaults).
      expect(YAML.parse(rendered().config)).not.toHaveProperty('events');
    });

    it('a SenderDomain\'s webhooks go into each relay that selects it, for that domain only, under names a relay\'s own cannot take', () => {
      const r = withEvents({ webhooks: [{ ...crm, caSecretName: undefined }] });
      const sd = sdWithHooks();
      const { config, byKind } = rendered(r, hooksInputs({ senderDomains: [sd] }));
      const hooks = parseConfig(YAML.parse(config), '/').events.webhooks;
      expect(hooks.map((w) => [w.name, w.senderDomains])).toEqual([['crm', undefined], ['sd-example-com-crm', ['example.com']]]);
      expect(hooks[1]!.signingKeys).toEqual([{ id: 'a', secretFile: `${KEY_ROOT}/sd-example-com-crm/a` }]);
      expect(byKind('Deployment').spec.template.spec.volumes).toContainEqual({ name: 'wh-sd-example-com-crm', secret: { secretName: 'sd-keys', defaultMode: 0o440 } });
      expect(mailRelaySpecSchema.safeParse({ events: { webhooks: [{ ...crm, name: 'sd-example-com-crm' }] } }).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`)).toEqual([
        'events.webhooks.0.name: names starting with sd- are kept for the webhooks of SenderDomains',
      ]);
      // Long names are cut to 63 with a hash; names that would meet (a-b's c, a's b-c) each get their own hash; dotted object names become labels.
      const long = relayWebhooks(r, [sdWithHooks('x'.repeat(60), [{ name: 'y'.repeat(30), url: 'https://a.example/h', secretName: 'sd-keys' }])]).at(-1)!.name;
      expect(long).toMatch(/^sd-x+-[0-9a-f]{10}$/);
      expect(long.length).toBeLessThanOrEqual(63);
      expect(label63('x'.repeat(64))).toBe(label63('x'.repeat(64)));
      const met = relayWebhooks(relay(), [sdWithHooks('a-b', [{ name: 'c', url: 'https://a.example/h', secretName: 's' }]), sdWithHooks('a', [{ name: 'b-c', url: 'https://a.example/h', secretName: 's' }])]).map((w) => w.name);
      expect(new Set(met).size).toBe(2);
      expect(met.every((n) => /^sd-a-b-c-[0-9a-f]{10}$/.test(n))).toBe(true);
      expect(relayWebhooks(relay(), [sdWithHooks('example.com')]).map((w) => w.name)).toEqual([expect.stringMatching(/^sd-example-com-crm-[0-9a-f]{10}$/)]);
    });

    it('lists the webhooks\' Secrets among those a relay needs: a missing one is Missing and named', () => {
      const r = withEvents({ webhooks: [crm] });
      expect(relaySecrets(r, [sdWithHooks()])).toEqual(
        expect.arrayContaining([
          { name: 'crm-keys', for: 'spec.events.webhooks[crm].secretName', madeBy: 'user' },
          { name: 'private-ca', for: 'spec.events.webhooks[crm].caSecretName', madeBy: 'user' },
          { name: 'sd-keys', for: 'SenderDomain example-com spec.events.webhooks[crm].secretName', madeBy: 'user' },
        ]),
      );
      const mounted = (rendered(r, hooksInputs({ senderDomains: [sdWithHooks()] })).byKind('Deployment').spec.template.spec.volumes as { secret?: { secretName: string } }[]).flatMap((v) => (v.secret ? [v.secret.secretName] : []));
      expect(mounted.sort()).toEqual([...new Set(relaySecrets(r, [sdWithHooks()]).map((x) => x.name))].sort());
      expect(renderMailRelay(r, hooksInputs({ secretExists: (n) => existing.has(n) || n === 'private-ca' }))).toEqual({ ok: false, reason: 'Missing', message: 'waiting for Secret crm-keys (spec.events.webhooks[crm].secretName)' });
    });

    it('a Secret with no key, a key that cannot be a key id (a dot), or too many keys holds the relay back with WebhookKeysInvalid, naming Secret and keys', () => {
      const r = withEvents({ webhooks: [{ ...crm, caSecretName: undefined }] });
      const withKeys = (keys: string[]) => renderMailRelay(r, hooksInputs({ secretKeys: (n) => (n === 'crm-keys' ? keys : []) }));
      expect(withKeys([])).toEqual({ ok: false, reason: 'WebhookKeysInvalid', message: expect.stringContaining('Secret crm-keys (spec.events.webhooks[crm].secretName) has no keys') });
      expect(withKeys(['k2026-12', 'k2027.01'])).toEqual({ ok: false, reason: 'WebhookKeysInvalid', message: expect.stringContaining('key "k2027.01" cannot be a signing key id') });
      expect(withKeys(['t'])).toMatchObject({ ok: false, reason: 'WebhookKeysInvalid' });
      expect(withKeys(['a', 'b', 'c', 'd', 'e'])).toEqual({ ok: false, reason: 'WebhookKeysInvalid', message: expect.stringContaining('has 5 keys; a webhook signs with at most 4') });
      expect(withKeys(['a', 'b', 'c', 'd'])).toMatchObject({ ok: true });
    });

    it('the schema: http(s) URLs, DNS-label names, unique names, known event types; a SenderDomain\'s webhooks take no senderDomains', () => {
      const issues = (webhooks: object[]) => {
        const r = mailRelaySpecSchema.safeParse({ events: { webhooks } });
        return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
      };
      expect(issues([crm, audit])).toEqual([]);
      expect(issues([{ ...crm, url: 'ftp://crm.example.com/' }])).toEqual(['events.webhooks.0.url: an http:// or https:// URL']);
      expect(issues([{ ...crm, name: 'CRM' }])).toEqual(['events.webhooks.0.name: a lower-case DNS label: letters, digits and dashes']);
      expect(issues([{ ...crm, name: 'a'.repeat(64) }])).toHaveLength(1);
      expect(issues([crm, { ...audit, name: 'crm' }])).toEqual(['events.webhooks.1.name: webhook crm is listed twice']);
      expect(issues([{ ...crm, types: ['read'] }])).toHaveLength(1);
      const sd = senderDomainSpecSchema.safeParse({ domain: 'example.com', events: { webhooks: [{ ...audit }] } });
      expect(sd.error?.issues).toMatchObject([{ code: 'unrecognized_keys', path: ['events', 'webhooks', 0], keys: ['senderDomains'] }]);
    });
  });

  describe('bounces: return paths and the bounces listener', () => {
    const withKey = (over: Partial<RelayInputs> = {}) => inputs({ secretExists: (n) => existing.has(n) || n === BOUNCES_KEY_SECRET, ...over });
    const returnPathDomain: SenderDomain = { ...domain, spec: senderDomainSpecSchema.parse({ domain: 'example.com', returnPath: 'bounces.example.com' }) };
    const secretsOf = (pod: { volumes: { secret?: { secretName: string } }[] }) => pod.volumes.flatMap((v) => (v.secret ? [v.secret.secretName] : []));
    const keyVolume = { name: 'bounces-key', secret: { secretName: 'mailfleet-bounces-key', defaultMode: 0o440, items: [{ key: 'key', path: 'key' }] } };
    const keyMount = { name: 'bounces-key', mountPath: '/etc/mailfleet/bounces', readOnly: true };

    it('spec.bounces and a SenderDomain with a returnPath: a bounces listener, the return path and the key in a config the relay itself parses; port, Service and key mount', () => {
      const r = relay({ bounces: { enabled: true, service: { annotations: { 'external-dns.alpha.kubernetes.io/hostname': 'bounces-mx.example.com' }, loadBalancerIP: '203.0.113.25' } } });
      const { config, byKind, objects } = rendered(r, withKey({ senderDomains: [returnPathDomain] }));
      const parsed = parseConfig(YAML.parse(config), '/etc/mailfleet/config');
      expect(parsed.listeners.map((l) => [l.name, l.port, l.tls, l.auth, l.role])).toEqual([
        ['submission', 10587, 'starttls', 'required', 'relay'],
        ['bounces', 2525, 'starttls', 'none', 'bounces'],
      ]);
      expect(parsed.senderDomains[0]!.returnPath).toBe('bounces.example.com');
      expect(parsed.bounces).toEqual({ keyFile: '/etc/mailfleet/bounces/key' });
      const pod = byKind('Deployment').spec.template.spec;
      expect(pod.containers[0].ports).toContainEqual({ name: 'bounces', containerPort: 2525, protocol: 'TCP' });
      expect(pod.volumes).toContainEqual(keyVolume);
      expect(pod.containers[0].volumeMounts).toContainEqual(keyMount);
      const service = byKind('Service', 'outbound-bounces');
      expect(service.metadata).toMatchObject({ annotations: { 'external-dns.alpha.kubernetes.io/hostname': 'bounces-mx.example.com' }, ownerReferences: [{ kind: 'MailRelay', name: 'outbound', uid: 'uid-relay', controller: true }] });
      expect(service.spec).toEqual({ type: 'LoadBalancer', selector: { 'app.kubernetes.io/name': 'mailfleet-relay', 'app.kubernetes.io/instance': 'outbound' }, ports: [{ name: 'smtp', port: 25, targetPort: 'bounces', protocol: 'TCP' }], loadBalancerIP: '203.0.113.25' });
      // The relay's own Service keeps only its listeners: no port 25 open to the world there.
      expect(byKind('Service', 'outbound').spec.ports.map((p: { name: string }) => p.name)).toEqual(['submission']);
      const models: Record<string, new (o: object) => { validate(): void }> = { Deployment, ConfigMap, Service, PodDisruptionBudget };
      for (const o of objects) expect(() => new models[o.kind]!(o).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow();
      expect(relaySecrets(r, [returnPathDomain])).toContainEqual({ name: 'mailfleet-bounces-key', for: 'the return paths\' key the operator makes, one per namespace', madeBy: 'operator' });
      expect(secretsOf(pod).sort()).toEqual(relaySecrets(r, [returnPathDomain]).map((x) => x.name).sort());
    });

    it('the bounces listener offers no STARTTLS on a relay without TLS; the Service type is the spec\'s', () => {
      const r = relay({ tlsSecretName: undefined, usersSecretName: undefined, listeners: [{ name: 'smtp', port: 2526, tls: 'none', auth: 'none', trustedNetworks: ['10.0.0.0/8'] }], bounces: { enabled: true, service: { type: 'NodePort' } } });
      const { config, byKind } = rendered(r, withKey());
      expect(parseConfig(YAML.parse(config), '/').listeners.find((l) => l.name === 'bounces')).toMatchObject({ port: 2525, tls: 'none', auth: 'none', role: 'bounces' });
      expect(byKind('Service', 'outbound-bounces').spec.type).toBe('NodePort');
      // No SenderDomain with a return path, but a listener: the key is needed to read the tokens.
      expect(parseConfig(YAML.parse(config), '/').bounces).toEqual({ keyFile: '/etc/mailfleet/bounces/key' });
    });

    it('a SenderDomain with a returnPath and no bounces listener of its own: the relay still gets the key (it signs the return paths), no listener, no Service', () => {
      const { config, byKind, objects } = rendered(relay(), withKey({ senderDomains: [returnPathDomain] }));
      const parsed = parseConfig(YAML.parse(config), '/');
      expect(parsed.bounces).toEqual({ keyFile: '/etc/mailfleet/bounces/key' });
      expect(parsed.listeners.map((l) => l.name)).toEqual(['submission']);
      expect(byKind('Deployment').spec.template.spec.volumes).toContainEqual(keyVolume);
      expect(objects.filter((o) => o.kind === 'Service').map((o) => o.metadata.name)).toEqual(['outbound', 'outbound-pods']);
    });

    it('neither: no key, no bounces section, no listener; spec.bounces.enabled false is the same', () => {
      for (const r of [relay(), relay({ bounces: { enabled: false } })]) {
        const { config, byKind } = rendered(r);
        expect(YAML.parse(config)).not.toHaveProperty('bounces');
        expect(secretsOf(byKind('Deployment').spec.template.spec)).not.toContain('mailfleet-bounces-key');
        expect(relaySecrets(r, [domain]).map((x) => x.name)).not.toContain('mailfleet-bounces-key');
      }
    });

    it('waits for the key Secret like the others, naming it', () => {
      expect(renderMailRelay(relay({ bounces: { enabled: true } }), inputs())).toEqual({ ok: false, reason: 'Missing', message: 'waiting for Secret mailfleet-bounces-key (the return paths\' key the operator makes, one per namespace)' });
    });

    it('the schema: a returnPath is the domain or under it; with bounces on, the listener name bounces and port 2525 are kept', () => {
      const sdIssues = (returnPath: string) => senderDomainSpecSchema.safeParse({ domain: 'example.com', returnPath }).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
      expect(sdIssues('bounces.example.com')).toEqual([]);
      expect(sdIssues('example.com')).toEqual([]);
      const outside = ['returnPath: returnPath must be spec.domain or a subdomain of it (e.g. bounces.example.com), so SPF stays aligned for DMARC'];
      expect(sdIssues('bounces.example.net')).toEqual(outside);
      expect(sdIssues('notexample.com')).toEqual(outside);
      expect(sdIssues('Bounces.example.com')).toHaveLength(1);
      const relayIssues = (spec: object) => mailRelaySpecSchema.safeParse(spec).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`) ?? [];
      const listeners = [{ name: 'bounces', port: 587 }, { name: 'smtp', port: 2525 }];
      expect(relayIssues({ bounces: { enabled: true }, listeners })).toEqual(['listeners.0.name: the name bounces is kept for the bounces listener of spec.bounces', "listeners.1.port: port 2525 is the bounces listener's (spec.bounces)"]);
      expect(relayIssues({ bounces: { enabled: false }, listeners })).toEqual([]);
      expect(mailRelaySpecSchema.parse({ bounces: { enabled: true } }).bounces).toEqual({ enabled: true, service: { type: 'LoadBalancer' } });
    });
  });
});

describe('dkimVolume', () => {
  const sd = (name: string) => ({ apiVersion: API_VERSION, kind: 'SenderDomain', metadata: { name, namespace: 'mail' }, spec: senderDomainSpecSchema.parse({ domain: 'news.example.com' }) }) as SenderDomain;
  it('is a DNS label for every object name: the name itself, or a hash when it is too long or holds dots', () => {
    expect(dkimVolume(sd('news-example-com'))).toBe('dkim-news-example-com');
    for (const name of ['news.example.com', 'x'.repeat(60)]) expect(dkimVolume(sd(name))).toMatch(/^dkim-[0-9a-f]{20}$/);
    expect(dkimVolume(sd('news.example.com'))).not.toBe(dkimVolume(sd('news.example.org')));
  });
});
