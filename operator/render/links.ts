/**
 * One-click unsubscribe (RFC 8058) in a MailRelay's objects, as pure functions: whether a relay
 * serves links, the `links` section and each domain's `unsubscribe` of its config, the
 * Service NAME-links and the Ingress NAME-links, and the warning a SenderDomain gets when no
 * Ingress serves its unsubscribe URL. mailrelay.ts calls these; nothing here talks to a cluster.
 */
import { LINKS_PORT, LINKS_PORT_NAME, linksSpecSchema } from '../api/links.js';
import type { MailRelay, SenderDomain } from '../api/v1alpha1.js';
import type { KubeObject } from './mailrelay.js';

/**
 * The links' key: ONE Secret per namespace, as the return paths' key (BOUNCES_KEY_SECRET) and
 * for the same reason: a link in a message may reach any relay whose Service the Ingress (or
 * the user's proxy) sends it to, so every relay of the namespace must check the same HMAC.
 * Made once by the operator (create, never apply: a new key would void the links in every
 * message already sent), with no owner.
 */
export const LINKS_KEY_SECRET = 'mailfleet-links-key';
export const LINKS_KEY_DIR = '/etc/mailfleet/links';
export const LINKS_KEY_FILE = `${LINKS_KEY_DIR}/key`;

/**
 * The Ingress's paths: the links endpoint serves /u/TOKEN (unsubscribe), /o/TOKEN and /c/TOKEN
 * (tracking) only, so only those prefixes go to the relays. The host may then be shared with
 * other services (an Ingress controller merges the rules of one host across Ingresses), and
 * the relays see no requests for anything else.
 */
export const LINKS_PATHS = ['/u/', '/o/', '/c/'];

/** Whether a relay serves links: spec.links.enabled, or a selected SenderDomain with spec.unsubscribe or spec.tracking (whose mail names links any relay must serve). */
export const linksOn = (relay: MailRelay, domains: readonly SenderDomain[]) => !!relay.spec.links?.enabled || domains.some((d) => d.spec.unsubscribe !== undefined || d.spec.tracking !== undefined);

/** The relay config's `links` section: all addresses, so the Service reaches it. */
export const linksConfig = () => ({ keyFile: LINKS_KEY_FILE, address: '0.0.0.0', port: LINKS_PORT });

/** A sender domain's `unsubscribe` and `tracking` in the relay config: mailto only when the spec says (the relay's default is the domain's returnPath). */
export const unsubscribeConfig = (d: SenderDomain) => {
  const u = d.spec.unsubscribe;
  const t = d.spec.tracking;
  return {
    ...(u ? { unsubscribe: { url: u.url, ...(u.mailto !== undefined ? { mailto: u.mailto } : {}) } } : {}),
    ...(t ? { tracking: { url: t.url, opens: t.opens, clicks: t.clicks, excludeDomains: t.excludeDomains } } : {}),
  };
};

/** The https URLs a domain's mail names links under: unsubscribe and tracking. */
const linkUrls = (d: SenderDomain) => [d.spec.unsubscribe?.url, d.spec.tracking?.url].filter((u): u is string => !!u && u.startsWith('https://'));

const hostOf = (url: string) => new URL(url).hostname;

/** The hosts an Ingress can serve: those of https URLs (an http URL is a loopback test; an Ingress host cannot be an IP). */
export function linksHosts(domains: readonly SenderDomain[]): string[] {
  const urls = domains.flatMap(linkUrls);
  return [...new Set(urls.map(hostOf))].sort();
}

export const linksServiceName = (relay: MailRelay) => `${relay.metadata.name}-links`;
export const linksTlsSecretName = (relay: MailRelay) => relay.spec.links?.ingress.tlsSecretName ?? `${relay.metadata.name}-links-tls`;

/** A port or name a listener takes from the links endpoint, in words; none when links are off. */
export function linksClashes(relay: MailRelay, domains: readonly SenderDomain[], containerPort: (port: number) => number): string[] {
  if (!linksOn(relay, domains)) return [];
  return relay.spec.listeners.flatMap((l, i) => [
    ...(containerPort(l.port) === LINKS_PORT ? [`spec.listeners.${i}.port: the relay binds ${LINKS_PORT} for the links endpoint of one-click unsubscribe; choose another port`] : []),
    ...(l.name === LINKS_PORT_NAME ? [`spec.listeners.${i}.name: the name ${LINKS_PORT_NAME} is kept for the links endpoint's container port; choose another name`] : []),
  ]);
}

/**
 * The Service NAME-links (80 to the pods' links port) and, with spec.links.ingress, the Ingress
 * NAME-links: a rule per https host of the selected domains' unsubscribe URLs, TLS for those
 * hosts in tlsSecretName and the spec's annotations, so cert-manager's ingress-shim issues the
 * certificate (cert-manager.io/cluster-issuer). No hosts, no Ingress (it would have no rule).
 */
export function linksObjects(relay: MailRelay, domains: readonly SenderDomain[], meta: (suffix: string) => KubeObject['metadata'], selector: Record<string, string>): KubeObject[] {
  // On through a SenderDomain alone: the defaults (a ClusterIP Service, no Ingress).
  const spec = relay.spec.links ?? linksSpecSchema.parse({});
  const svc = spec.service;
  const service: KubeObject = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { ...meta('-links'), ...(svc.annotations ? { annotations: svc.annotations } : {}) },
    spec: { type: svc.type, selector, ports: [{ name: 'http', port: 80, targetPort: LINKS_PORT_NAME, protocol: 'TCP' }], ...(svc.loadBalancerIP ? { loadBalancerIP: svc.loadBalancerIP } : {}) },
  };
  const hosts = linksHosts(domains);
  const ing = spec.ingress;
  if (!ing.enabled || !hosts.length) return [service];
  const backend = { service: { name: linksServiceName(relay), port: { name: 'http' } } };
  const ingress: KubeObject = {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: { ...meta('-links'), ...(ing.annotations ? { annotations: ing.annotations } : {}) },
    spec: {
      ...(ing.className ? { ingressClassName: ing.className } : {}),
      tls: [{ hosts, secretName: linksTlsSecretName(relay) }],
      rules: hosts.map((host) => ({ host, http: { paths: LINKS_PATHS.map((path) => ({ path, pathType: 'Prefix', backend })) } })),
    },
  };
  return [service, ingress];
}

/** A reference to an object of the relay's namespace. */
export interface LinksObjectRef {
  apiVersion: string;
  kind: string;
  name: string;
}

/**
 * Of the objects links make, those no longer rendered that this relay still owns (its uid, as
 * controller): the Ingress after spec.links.ingress went off or its last host went, both after
 * links did. The controller deletes them, so no Ingress (and no certificate) is left routing
 * to pods that do not listen. Nothing else is ever named here: other objects of these names,
 * or another owner's, are not this relay's to delete. `live` is the operator's cache of its own objects.
 */
export function staleLinksObjects(relay: MailRelay, rendered: readonly { apiVersion: string; kind: string; metadata: { name: string } }[], live: (ref: LinksObjectRef) => { metadata: { ownerReferences?: unknown } } | undefined): LinksObjectRef[] {
  const name = linksServiceName(relay);
  const refs: LinksObjectRef[] = [
    { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', name },
    { apiVersion: 'v1', kind: 'Service', name },
  ];
  const ownedByRelay = (o: ReturnType<typeof live>) =>
    !!relay.metadata.uid && ((o?.metadata.ownerReferences ?? []) as { kind?: string; uid?: string; controller?: boolean }[]).some((r) => r.kind === 'MailRelay' && r.uid === relay.metadata.uid && r.controller === true);
  return refs.filter((ref) => !rendered.some((o) => o.apiVersion === ref.apiVersion && o.kind === ref.kind && o.metadata.name === ref.name) && ownedByRelay(live(ref)));
}

/**
 * What a SenderDomain's status says of its unsubscribe URL: when no MailRelay that selects it
 * has spec.links.ingress, nothing the operator makes serves the URL, and it must reach the
 * Service NAME-links some other way (with TLS), or every link in its mail fails. `relays` are
 * those that select the domain; with none, the records' warning says so already.
 */
export function linksWarnings(domain: SenderDomain, relays: readonly MailRelay[]): string[] {
  if (!relays.length || relays.some((r) => r.spec.links?.ingress.enabled)) return [];
  const services = [...relays].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).map(linksServiceName);
  return (['unsubscribe', 'tracking'] as const).flatMap((field) => {
    const url = domain.spec[field]?.url;
    if (!url || !url.startsWith('https://')) return [];
    return [
      `${url} (spec.${field}.url) is served by no Ingress of the operator: the MailRelays that select ${domain.spec.domain} have spec.links.ingress off, so the URL must reach Service ${services.join(' or ')} (port 80) through your own Ingress or proxy, with TLS for ${hostOf(url)}; or set spec.links.ingress.enabled on one of them`,
    ];
  });
}
