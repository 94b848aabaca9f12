/**
 * A MailRelay's desired objects, as a pure function of its spec and the objects it refers to:
 * the controller applies the result, `mailfleet render` prints it. Nothing here talks to a
 * cluster, so the output for given inputs is always the same (tests and GitOps diffs rely on it).
 *
 * The relay's config is rendered into the relay's own schema (relay/config.ts) and checked by
 * it: a MailRelay that would give the relay a config it refuses is reported, never applied.
 *
 * Over 400 lines as one unit: the relay's config, its mounts and its objects must agree (each
 * file the config names is a mount made here), so they are made in one place; the webhooks
 * (./webhooks.ts) and the links of one-click unsubscribe (./links.ts) are in modules of their own.
 */
import crypto from 'node:crypto';
import YAML from 'yaml';
import { formatIssues, configSchema, type RelayConfigInput } from '../../relay/config.js';
import type { SmarthostOAuth2Config } from '../../relay/delivery/oauth2/config.js';
import { API_VERSION, BOUNCES_LISTENER, BOUNCES_PORT, OAUTH2_CREDENTIAL_KEYS, oauth2Credential, type MailRelay, type SenderDomain } from '../api/v1alpha1.js';
import { relayWebhooks, webhookKeys, webhookVolume, WEBHOOK_CA_DIR, WEBHOOKS_DIR, type RelayWebhook } from './webhooks.js';
import { LINKS_PORT, LINKS_PORT_NAME } from '../api/links.js';
import { LINKS_KEY_DIR, LINKS_KEY_SECRET, linksClashes, linksConfig, linksObjects, linksOn, unsubscribeConfig } from './links.js';

export { label63, relayWebhooks } from './webhooks.js';

export type KubeObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: unknown[] };
  [key: string]: unknown;
};

/** What the render needs from the cluster besides the MailRelay. */
export interface RelayInputs {
  /** SenderDomains the relay's selector matches (with their status: keys and Secret). */
  senderDomains: SenderDomain[];
  /** Whether a Secret of this name exists in the relay's namespace. */
  secretExists: (name: string) => boolean;
  /**
   * The key names (never the values) of a Secret in the relay's namespace: asked only for the
   * webhooks' Secrets, whose keys are the signing key ids. Empty for a Secret not found.
   */
  secretKeys: (name: string) => readonly string[];
  /** The relay image when the spec names none (the operator's own image). */
  defaultImage: string;
  /** Whether the ServiceMonitor CRD (monitoring.coreos.com) is installed. */
  serviceMonitors: boolean;
}

export type RenderResult = { ok: true; objects: KubeObject[]; config: string } | { ok: false; reason: 'Missing' | 'Invalid' | 'WebhookKeysInvalid'; message: string };

const CONFIG_DIR = '/etc/mailfleet/config';
const SPOOL_DIR = '/var/spool/mailfleet';
const METRICS_PORT = 9090;
export const FIELD_MANAGER = 'mailfleet-operator';

export function relayLabels(relay: MailRelay): Record<string, string> {
  return { 'app.kubernetes.io/name': 'mailfleet-relay', 'app.kubernetes.io/instance': relay.metadata.name, 'app.kubernetes.io/managed-by': 'mailfleet-operator' };
}

/** The label selector of the relay's pods, as a string (the scale subresource's status.selector). */
export function relaySelector(relay: MailRelay): string {
  const l = relayLabels(relay);
  return `app.kubernetes.io/name=${l['app.kubernetes.io/name']},app.kubernetes.io/instance=${l['app.kubernetes.io/instance']}`;
}

const QUANTITY: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
export function quantityBytes(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  if (!m) throw new Error(`${q} is not a quantity`);
  return Math.round(Number(m[1]) * QUANTITY[m[2] ?? '']!);
}

/**
 * The port the relay binds in its container. It runs without capabilities, so it cannot bind
 * below 1024: the Service keeps the well-known port (587) and targets 10000 + port (10587).
 */
export const containerPort = (port: number) => (port < 1024 ? 10_000 + port : port);

/** Where a SenderDomain's DKIM keys are mounted in the relay pod. */
const dkimDir = (domain: SenderDomain) => `/etc/mailfleet/dkim/${domain.spec.domain}`;
/**
 * Volume names are DNS labels: the SenderDomain's object name, hashed when too long or when it
 * holds dots (an object named news.example.com, which the API server refused in a pod).
 */
export const dkimVolume = (domain: SenderDomain) => {
  const name = `dkim-${domain.metadata.name}`;
  return name.length <= 63 && DNS_LABEL.test(name) ? name : `dkim-${crypto.createHash('sha256').update(domain.metadata.name).digest('hex').slice(0, 20)}`;
};
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/** Where the smarthost's credentials are mounted: a user name and password, or the OAuth 2.0 client's Secret. */
const UPSTREAM_DIR = '/etc/mailfleet/upstream';
export const OAUTH2_DIR = '/etc/mailfleet/smarthost-oauth2';

type OAuth2Spec = NonNullable<NonNullable<MailRelay['spec']['delivery']['smarthost']>['oauth2']>;

/** delivery.route.oauth2 of the relay's config: the spec's settings, and the Secret's keys as files. */
function oauth2Config(o: OAuth2Spec): NonNullable<SmarthostOAuth2Config> {
  const files = {
    clientSecret: { clientSecretFile: `${OAUTH2_DIR}/client-secret` },
    certificate: { certificateFile: `${OAUTH2_DIR}/tls.crt`, privateKeyFile: `${OAUTH2_DIR}/tls.key` },
    serviceAccount: { serviceAccountFile: `${OAUTH2_DIR}/service-account.json` },
  }[oauth2Credential(o)];
  const optional = <K extends 'tenant' | 'clientId' | 'tokenUrl' | 'scope'>(k: K) => (o[k] !== undefined ? { [k]: o[k] } : {});
  return { provider: o.provider, user: o.user, ...optional('tenant'), ...optional('clientId'), ...optional('tokenUrl'), ...optional('scope'), ...files };
}

/** The smarthost's credentials Secret and how it is mounted, when the route uses one: the mount and relaySecrets agree on it. */
function smarthostSecret(relay: MailRelay): { name: string; field: string; volume: string; dir: string; keys: readonly string[] } | undefined {
  const d = relay.spec.delivery;
  if (d.route !== 'smarthost' || !d.smarthost) return undefined;
  if (d.smarthost.credentialsSecretName) return { name: d.smarthost.credentialsSecretName, field: 'spec.delivery.smarthost.credentialsSecretName', volume: 'upstream', dir: UPSTREAM_DIR, keys: ['username', 'password'] };
  const o = d.smarthost.oauth2;
  if (o) return { name: o.secretName, field: 'spec.delivery.smarthost.oauth2.secretName', volume: 'smarthost-oauth2', dir: OAUTH2_DIR, keys: OAUTH2_CREDENTIAL_KEYS[oauth2Credential(o)] };
  return undefined;
}

/**
 * The return paths' key: ONE Secret per namespace, not one per MailRelay. A report comes back to
 * whatever the return path domain's MX names, which may be another MailRelay's bounces listener
 * in the same namespace (one MailRelay for the MX, others that only send; or a relay replaced by
 * a new one): every relay that signs or reads return paths in the namespace must share the key,
 * or the report's token does not check out and the report is refused. The operator makes it
 * once (create, never apply: a key changed under running pods would void every return path on
 * mail in flight) and gives it no owner, so deleting one MailRelay does not take the key from
 * the others. Namespaces stay apart: a relay never reads another namespace's reports.
 */
export const BOUNCES_KEY_SECRET = 'mailfleet-bounces-key';
export const BOUNCES_KEY_DIR = '/etc/mailfleet/bounces';

/**
 * Whether a relay needs the return paths' key: it has a bounces listener (it reads tokens), or
 * it selects a SenderDomain with a return path (it signs them), with or without a listener.
 */
export const needsBouncesKey = (relay: MailRelay, domains: readonly SenderDomain[]) => !!relay.spec.bounces?.enabled || domains.some((d) => d.spec.returnPath !== undefined);

function relayConfig(relay: MailRelay, inputs: RelayInputs, hooks: readonly RelayWebhook[], keys: ReadonlyMap<string, string[]>): RelayConfigInput {
  const spec = relay.spec;
  const ns = relay.metadata.namespace ?? 'default';
  const route =
    spec.delivery.route === 'smarthost' && spec.delivery.smarthost
      ? {
          type: 'smarthost' as const,
          host: spec.delivery.smarthost.host,
          port: spec.delivery.smarthost.port,
          tls: spec.delivery.smarthost.tls,
          ...(spec.delivery.smarthost.credentialsSecretName ? { usernameFile: `${UPSTREAM_DIR}/username`, passwordFile: `${UPSTREAM_DIR}/password` } : {}),
          ...(spec.delivery.smarthost.oauth2 ? { oauth2: oauth2Config(spec.delivery.smarthost.oauth2) } : {}),
        }
      : { type: 'mx' as const, dnsServers: spec.delivery.dnsServers };
  const spoolBytes = quantityBytes(spec.spool.sizeLimit);
  return {
    hostname: spec.hostname ?? `${relay.metadata.name}.${ns}.svc`,
    spool: { dir: SPOOL_DIR, minFreeBytes: Math.floor(spoolBytes / 20) },
    listeners: [
      ...spec.listeners.map((l) => ({ name: l.name, address: '0.0.0.0', port: containerPort(l.port), tls: l.tls, auth: l.auth, trustedNetworks: l.trustedNetworks })),
      // Reports from any server: no AUTH; STARTTLS offered when the relay has a certificate.
      ...(spec.bounces?.enabled ? [{ name: BOUNCES_LISTENER, address: '0.0.0.0', port: BOUNCES_PORT, tls: spec.tlsSecretName ? ('starttls' as const) : ('none' as const), auth: 'none' as const, role: 'bounces' as const }] : []),
    ],
    ...(spec.tlsSecretName ? { tls: { certFile: '/etc/mailfleet/tls/tls.crt', keyFile: '/etc/mailfleet/tls/tls.key' } } : {}),
    ...(spec.usersSecretName ? { auth: { usersFile: '/etc/mailfleet/users/users' } } : {}),
    senderDomains: inputs.senderDomains.map((d) => ({
      domain: d.spec.domain,
      dkim: { keys: (d.status?.keys ?? []).map((k) => ({ selector: k.selector, privateKeyFile: `${dkimDir(d)}/${k.selector}.pem`, active: k.state === 'active' })) },
      spf: d.spec.spf,
      dmarc: d.spec.dmarc,
      ...(d.spec.returnPath ? { returnPath: d.spec.returnPath } : {}),
      ...unsubscribeConfig(d),
    })),
    limits: {
      maxMessageSize: quantityBytes(spec.limits.maxMessageSize),
      maxRecipients: spec.limits.maxRecipients,
      maxConnections: spec.limits.maxConnections,
      messagesPerUserPerMinute: spec.limits.messagesPerUserPerMinute,
    },
    delivery: {
      route,
      maxConnections: spec.delivery.maxConnections,
      maxConnectionsPerDestination: spec.delivery.maxConnectionsPerDestination,
      egressAddresses: spec.delivery.egressAddresses,
    },
    retry: spec.retry,
    ...(needsBouncesKey(relay, inputs.senderDomains) ? { bounces: { keyFile: `${BOUNCES_KEY_DIR}/key` } } : {}),
    ...(linksOn(relay, inputs.senderDomains) ? { links: linksConfig() } : {}),
    ...(hooks.length || spec.events?.maxOutboxBytes
      ? {
          events: {
            webhooks: hooks.map((w) => ({
              name: w.name,
              url: w.spec.url,
              ...(w.senderDomains ? { senderDomains: w.senderDomains } : {}),
              ...(w.spec.types ? { types: w.spec.types } : {}),
              signingKeys: (keys.get(w.name) ?? []).map((id) => ({ id, secretFile: `${WEBHOOKS_DIR}/${w.name}/${id}` })),
              ...(w.spec.caSecretName ? { caFile: `${WEBHOOK_CA_DIR}/${w.name}/ca.crt` } : {}),
              ...(w.spec.timeout ? { timeout: w.spec.timeout } : {}),
              ...(w.spec.batchSize ? { batchSize: w.spec.batchSize } : {}),
            })),
            ...(spec.events?.maxOutboxBytes ? { maxOutboxBytes: quantityBytes(spec.events.maxOutboxBytes) } : {}),
          },
        }
      : {}),
    http: { address: '0.0.0.0', port: METRICS_PORT },
    // Sessions and deliveries get the grace period less a margin for the process to exit.
    shutdown: { drainTimeout: Math.max(5, spec.terminationGracePeriodSeconds - 5) },
    // A stopping pod hands what it could not deliver to the others, found through the headless Service.
    handoff: {
      tokenFile: '/etc/mailfleet/handoff/token',
      peerService: `${relay.metadata.name}-pods.${ns}.svc.cluster.local`,
      peerPort: METRICS_PORT,
      window: Math.min(10, Math.max(2, Math.floor((spec.terminationGracePeriodSeconds - 5) / 3))),
    },
  };
}

/** The Secret holding the fleet's handoff token: made by the operator, one per MailRelay. */
export const handoffSecretName = (relay: MailRelay) => `${relay.metadata.name}-handoff`;

/** A Secret a relay needs: its name, what it is for (in messages), and who makes it. */
export interface RelaySecret {
  name: string;
  for: string;
  /** The operator makes the handoff token and the DKIM keys; the user makes the others. */
  madeBy: 'operator' | 'user';
}

/**
 * Every Secret a relay needs before its pods can start, in one list: the controller looks
 * each up, the render waits for them, and `mailfleet render` names those the user must make.
 */
export function relaySecrets(relay: MailRelay, domains: readonly SenderDomain[]): RelaySecret[] {
  const s = relay.spec;
  const user = (name: string | undefined, field: string): RelaySecret[] => (name ? [{ name, for: field, madeBy: 'user' }] : []);
  return [
    { name: handoffSecretName(relay), for: 'the handoff token the operator makes', madeBy: 'operator' },
    ...user(s.tlsSecretName, 'spec.tlsSecretName'),
    ...user(s.usersSecretName, 'spec.usersSecretName'),
    // Only when the route uses it: what is not mounted is not waited for.
    ...user(smarthostSecret(relay)?.name, smarthostSecret(relay)?.field ?? ''),
    ...domains.flatMap((d): RelaySecret[] => (d.status?.secretName ? [{ name: d.status.secretName, for: `the DKIM keys of SenderDomain ${d.metadata.name}`, madeBy: 'operator' }] : [])),
    ...relayWebhooks(relay, domains).flatMap((w) => [...user(w.spec.secretName, `${w.field}.secretName`), ...user(w.spec.caSecretName, `${w.field}.caSecretName`)]),
    ...(needsBouncesKey(relay, domains) ? [{ name: BOUNCES_KEY_SECRET, for: 'the return paths\' key the operator makes, one per namespace', madeBy: 'operator' as const }] : []),
    ...(linksOn(relay, domains) ? [{ name: LINKS_KEY_SECRET, for: 'the unsubscribe links\' key the operator makes, one per namespace', madeBy: 'operator' as const }] : []),
  ];
}

export function renderMailRelay(relay: MailRelay, inputs: RelayInputs): RenderResult {
  const { name } = relay.metadata;
  const namespace = relay.metadata.namespace ?? 'default';
  const spec = relay.spec;

  const keyless = inputs.senderDomains.filter((d) => !d.status?.secretName || !d.status.keys?.length);
  const missing = [
    ...relaySecrets(relay, inputs.senderDomains).filter((s) => !inputs.secretExists(s.name)).map((s) => `Secret ${s.name} (${s.for})`),
    ...keyless.map((d) => `DKIM keys of SenderDomain ${d.metadata.name} (not generated yet)`),
  ];
  if (missing.length) return { ok: false, reason: 'Missing', message: `waiting for ${missing.join(', ')}` };

  // A webhook whose Secret holds no key the relay can sign with holds back the whole relay, as a
  // missing Secret does, rather than being rendered without that webhook or without the keys
  // it cannot take: the pods running keep their last good config and write the webhook's
  // events to the outbox, which it gets once the Secret is fixed. Left out, the webhook would
  // lose every event from the rollout on (the relay keeps none for a webhook it does not
  // know); with fewer keys, a receiver that already checks only the new key would refuse
  // every batch. The relay would refuse a webhook with no key at all.
  const hooks = relayWebhooks(relay, inputs.senderDomains);
  const { keys, problems } = webhookKeys(hooks, inputs);
  if (problems.length) return { ok: false, reason: 'WebhookKeysInvalid', message: problems.join('; ') };

  // The links endpoint's port and name are the relay's, which listeners may not take (the relay's config check knows only listeners).
  const clashes = linksClashes(relay, inputs.senderDomains, containerPort);
  if (clashes.length) return { ok: false, reason: 'Invalid', message: clashes.join('; ') };
  const configInput = relayConfig(relay, inputs, hooks, keys);
  const checked = configSchema.safeParse(configInput);
  if (!checked.success) return { ok: false, reason: 'Invalid', message: `the relay would refuse this configuration:\n${formatIssues(checked.error.issues)}` };
  const config = YAML.stringify(configInput);

  const labels = relayLabels(relay);
  const selectorLabels = { 'app.kubernetes.io/name': labels['app.kubernetes.io/name']!, 'app.kubernetes.io/instance': name };
  const owner = { apiVersion: API_VERSION, kind: 'MailRelay', name, uid: relay.metadata.uid ?? '', controller: true, blockOwnerDeletion: true };
  // A preview (`mailfleet render`) has no uid yet: no owner reference then.
  const meta = (suffix = '') => ({ name: `${name}${suffix}`, namespace, labels, ...(owner.uid ? { ownerReferences: [owner] } : {}) });

  const secretVolume = (volume: string, secretName: string, items?: { key: string; path: string }[]) => ({ name: volume, secret: { secretName, defaultMode: 0o440, ...(items ? { items } : {}) } });
  const volumes: unknown[] = [
    { name: 'config', configMap: { name: `${name}-config` } },
    { name: 'spool', emptyDir: { sizeLimit: spec.spool.sizeLimit } },
  ];
  const mounts: unknown[] = [
    { name: 'config', mountPath: CONFIG_DIR, readOnly: true },
    { name: 'spool', mountPath: SPOOL_DIR },
  ];
  const mountSecret = (volume: string, secretName: string, mountPath: string, items?: { key: string; path: string }[]) => {
    volumes.push(secretVolume(volume, secretName, items));
    mounts.push({ name: volume, mountPath, readOnly: true });
  };
  if (spec.tlsSecretName) mountSecret('tls', spec.tlsSecretName, '/etc/mailfleet/tls');
  if (spec.usersSecretName) mountSecret('users', spec.usersSecretName, '/etc/mailfleet/users', [{ key: 'users', path: 'users' }]);
  const upstream = smarthostSecret(relay);
  if (upstream) mountSecret(upstream.volume, upstream.name, upstream.dir, upstream.keys.map((key) => ({ key, path: key })));
  for (const d of inputs.senderDomains) mountSecret(dkimVolume(d), d.status!.secretName!, dkimDir(d));
  for (const w of hooks) {
    // The whole Secret: its keys are the key ids, and a key added for rotation appears in the running pods.
    mountSecret(webhookVolume(w, 'wh-'), w.spec.secretName, `${WEBHOOKS_DIR}/${w.name}`);
    if (w.spec.caSecretName) mountSecret(webhookVolume(w, 'whca-'), w.spec.caSecretName, `${WEBHOOK_CA_DIR}/${w.name}`, [{ key: 'ca.crt', path: 'ca.crt' }]);
  }
  mountSecret('handoff', handoffSecretName(relay), '/etc/mailfleet/handoff', [{ key: 'token', path: 'token' }]);
  if (needsBouncesKey(relay, inputs.senderDomains)) mountSecret('bounces-key', BOUNCES_KEY_SECRET, BOUNCES_KEY_DIR, [{ key: 'key', path: 'key' }]);
  const links = linksOn(relay, inputs.senderDomains);
  if (links) mountSecret('links-key', LINKS_KEY_SECRET, LINKS_KEY_DIR, [{ key: 'key', path: 'key' }]);

  const ports = [
    ...spec.listeners.map((l) => ({ name: l.name, containerPort: containerPort(l.port), protocol: 'TCP' })),
    ...(spec.bounces?.enabled ? [{ name: BOUNCES_LISTENER, containerPort: BOUNCES_PORT, protocol: 'TCP' }] : []),
    ...(links ? [{ name: LINKS_PORT_NAME, containerPort: LINKS_PORT, protocol: 'TCP' }] : []),
    { name: 'metrics', containerPort: METRICS_PORT, protocol: 'TCP' },
  ];
  const probe = (path: string, periodSeconds: number, failureThreshold: number) => ({ httpGet: { path, port: 'metrics' }, periodSeconds, failureThreshold, timeoutSeconds: 2 });

  const deployment: KubeObject = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: meta(),
    spec: {
      // Autoscaling on: the autoscaler's decision (kept in status); off: the spec, which a user,
      // an HPA or KEDA sets through the scale subresource.
      replicas: spec.autoscaling.enabled ? (relay.status?.autoscaler?.desiredReplicas ?? spec.autoscaling.minReplicas) : spec.replicas,
      selector: { matchLabels: selectorLabels },
      // One pod at a time: a leaving pod hands its queue to the others, which must be there.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'relay',
              image: spec.image ?? inputs.defaultImage,
              args: ['relay', '--config', `${CONFIG_DIR}/relay.yaml`],
              // Its own address, left out of the peers it hands mail to.
              env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
              ports,
              readinessProbe: probe('/readyz', 5, 2),
              livenessProbe: probe('/healthz', 10, 6),
              ...(spec.resources ? { resources: spec.resources } : {}),
              securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
              volumeMounts: mounts,
            },
          ],
          volumes,
          topologySpreadConstraints: ['topology.kubernetes.io/zone', 'kubernetes.io/hostname'].map((topologyKey) => ({ maxSkew: 1, topologyKey, whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: selectorLabels } })),
          ...(spec.nodeSelector ? { nodeSelector: spec.nodeSelector } : {}),
          ...(spec.tolerations ? { tolerations: spec.tolerations } : {}),
          ...(spec.affinity ? { affinity: spec.affinity } : {}),
        },
      },
    },
  };

  const objects: KubeObject[] = [
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: meta('-config'), data: { 'relay.yaml': config } },
    deployment,
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta(),
      spec: { selector: selectorLabels, ports: spec.listeners.map((l) => ({ name: l.name, port: l.port, targetPort: l.name, protocol: 'TCP' })) },
    },
    // The pods themselves, for Prometheus and for relays that hand mail to each other.
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('-pods'),
      spec: { clusterIP: 'None', publishNotReadyAddresses: false, selector: selectorLabels, ports: [{ name: 'metrics', port: METRICS_PORT, targetPort: 'metrics', protocol: 'TCP' }] },
    },
    { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: meta(), spec: { maxUnavailable: 1, selector: { matchLabels: selectorLabels } } },
  ];
  if (spec.bounces?.enabled) {
    // Other mail servers' reports, on port 25: the MX of the return path domains names its public address.
    const svc = spec.bounces.service;
    objects.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { ...meta('-bounces'), ...(svc.annotations ? { annotations: svc.annotations } : {}) },
      spec: {
        type: svc.type,
        selector: selectorLabels,
        ports: [{ name: 'smtp', port: 25, targetPort: BOUNCES_LISTENER, protocol: 'TCP' }],
        ...(svc.loadBalancerIP ? { loadBalancerIP: svc.loadBalancerIP } : {}),
      },
    });
  }
  // The public links of one-click unsubscribe: the Service NAME-links, and the Ingress with spec.links.ingress.
  if (links) objects.push(...linksObjects(relay, inputs.senderDomains, meta, selectorLabels));
  if (inputs.serviceMonitors) {
    objects.push({
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'ServiceMonitor',
      metadata: meta(),
      spec: { selector: { matchLabels: { ...selectorLabels } }, endpoints: [{ port: 'metrics', path: '/metrics', interval: '15s' }] },
    });
  }
  return { ok: true, objects, config };
}

/** The in-cluster endpoint applications use: the first listener on the Service. */
export function relayEndpoint(relay: MailRelay): string {
  return `${relay.metadata.name}.${relay.metadata.namespace ?? 'default'}.svc:${relay.spec.listeners[0]?.port ?? 587}`;
}
