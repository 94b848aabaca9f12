/**
 * The links the relays put in mail, in the API: a SenderDomain's `spec.unsubscribe` (one-click
 * unsubscribe, RFC 8058) and `spec.tracking` (opens and clicks), and a MailRelay's `spec.links`
 * (the relays' public links endpoint, its Service and Ingress).
 * Beside v1alpha1.ts, which uses them, so that file stays within the house's size.
 */
import { z } from 'zod';

/** The port of the relay's links endpoint in the pod (relay/links/config.ts's default); the Service NAME-links takes 80 to it. */
export const LINKS_PORT = 8090;
/** The container port's name, which the Service targets. */
export const LINKS_PORT_NAME = 'links';

/**
 * The base URL: an https origin (no path: the relays serve /u/TOKEN at the root, and an Ingress
 * cannot rewrite a path portably), or http to a loopback host for tests (as the relay allows).
 * A pattern, so even a v1.20 API server refuses another; zod says the same for `mailfleet render`.
 */
const dnsLabel = '[a-z0-9]([a-z0-9-]*[a-z0-9])?';
const UNSUBSCRIBE_URL = new RegExp(`^(https://${dnsLabel}(\\.${dnsLabel})+|http://(localhost|127\\.[0-9]+\\.[0-9]+\\.[0-9]+|\\[::1\\]))(:[0-9]{1,5})?$`);

/** mailto: true needs a return path: the rule twice, zod for `mailfleet render` and the operator, CEL for API servers 1.25 and later. */
export const UNSUBSCRIBE_MAILTO_RULE = {
  rule: '!has(self.unsubscribe) || !has(self.unsubscribe.mailto) || !self.unsubscribe.mailto || has(self.returnPath)',
  message: 'unsubscribe.mailto needs spec.returnPath: the address is unsubscribe@RETURN-PATH, which a bounces listener takes; set returnPath or leave mailto out',
};
export const unsubscribeMailtoAllowed = (s: { returnPath?: string | undefined; unsubscribe?: { mailto?: boolean | undefined } | undefined }) => !s.unsubscribe?.mailto || s.returnPath !== undefined;

export const unsubscribeSpecSchema = z
  .strictObject({
    url: z
      .string()
      .regex(UNSUBSCRIBE_URL, 'an https:// origin such as https://links.example.com, with no path (the relays serve /u/TOKEN at its root); http:// only to a loopback host, for tests')
      .describe("The public https origin at which the relays' links endpoint is reached, e.g. https://links.example.com: mail from this domain names URL/u/TOKEN in List-Unsubscribe. With a MailRelay's spec.links.ingress its host gets an Ingress rule and a certificate; otherwise route it to the Service NAME-links yourself."),
    mailto: z
      .boolean()
      .optional()
      .describe('Also name mailto:unsubscribe@RETURN-PATH (a bounces listener takes it) for mail programs without one-click. Needs spec.returnPath. Omitted: on when the domain has a returnPath.'),
  })
  .describe('One-click unsubscribe (RFC 8058): the relays add List-Unsubscribe and List-Unsubscribe-Post to mail from this domain and serve the link (docs/operator.md#one-click-unsubscribe). Every MailRelay that selects the domain gets the links endpoint and the namespace\'s links key.');

export const trackingSpecSchema = z
  .strictObject({
    url: z
      .string()
      .regex(UNSUBSCRIBE_URL, 'an https:// origin such as https://t.example.com, with no path (the relays serve /o/ and /c/ at its root); http:// only to a loopback host, for tests')
      .describe("The tracking host, an https origin under this domain, e.g. https://t.example.com (a CNAME to your Ingress): the relays rewrite links to URL/c/TOKEN and add the pixel URL/o/TOKEN. With a MailRelay's spec.links.ingress its host gets an Ingress rule and a certificate."),
    opens: z.boolean().default(true).describe('The pixel: an `opened` event when it loads.'),
    clicks: z.boolean().default(true).describe('The links: a `clicked` event and a 307 to the link when one is followed.'),
    excludeDomains: z.array(z.string().min(1)).default([]).describe('Links to these domains and their subdomains are left as they are.'),
  })
  .describe('Open and click tracking (docs/tracking.md): the relays rewrite one-recipient mail from this domain before signing, and serve the pixel and the redirects. Every MailRelay that selects the domain gets the links endpoint and the namespace\'s links key.');

export const linksSpecSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe(`The links endpoint (port ${LINKS_PORT} in the pod, 80 on the Service NAME-links) even when no selected SenderDomain has spec.unsubscribe; with one it is on anyway.`),
    service: z
      .strictObject({
        type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer']).default('ClusterIP').describe('The Service NAME-links: ClusterIP, reached through the Ingress.'),
        annotations: z.record(z.string(), z.string()).optional().describe('Annotations of the Service.'),
        loadBalancerIP: z.string().optional().describe('A fixed address for the load balancer, where the cloud takes one.'),
      })
      .prefault({}),
    publicHost: z
      .string()
      .regex(new RegExp(`^${dnsLabel}(\\.${dnsLabel})+$`), 'a DNS name such as links-ingress.example.net')
      .max(253)
      .optional()
      .describe("The public host name of the links endpoint (the Ingress's load balancer, e.g. ingress.example.net): the SenderDomains it serves get a CNAME to it in status.records for each unsubscribe and tracking host under their domain."),
    ingress: z
      .strictObject({
        enabled: z.boolean().default(false).describe('An Ingress NAME-links (networking.k8s.io/v1) with a rule for the host of each selected SenderDomain\'s unsubscribe and tracking URLs (path prefixes /u/, /o/ and /c/) and TLS for those hosts.'),
        className: z.string().min(1).optional().describe('spec.ingressClassName of the Ingress; omitted: the cluster\'s default class.'),
        annotations: z.record(z.string(), z.string()).optional().describe('Annotations of the Ingress, e.g. cert-manager.io/cluster-issuer: letsencrypt, so cert-manager issues the certificate into tlsSecretName.'),
        tlsSecretName: z
          .string()
          .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a Kubernetes object name')
          .max(253)
          .optional()
          .describe('The kubernetes.io/tls Secret of the Ingress\'s certificate (cert-manager writes it). Default: NAME-links-tls.'),
      })
      .prefault({}),
  })
  .describe('The public links endpoint of one-click unsubscribe (docs/operator.md#one-click-unsubscribe): on when enabled or when a selected SenderDomain has spec.unsubscribe.');
export type LinksSpec = z.output<typeof linksSpecSchema>;
