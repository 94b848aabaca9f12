/**
 * The operator's resources, group `mailfleet.io`, version `v1alpha1`: zod schemas that are the
 * one source of truth. The CRDs in crds/ are generated from them (`npm run crds`; a test fails
 * when they drift), `mailfleet render` validates manifests with them, and the controllers
 * read specs through them (so defaults are the same everywhere).
 *
 * Spec objects are strict: an unknown field (a misspelling such as autoscaling.maxReplica) is an
 * error naming its path in `mailfleet render`, and makes the operator report InvalidSpec. The
 * CRDs cannot say so (the API server prunes unknown fields, or refuses them itself with
 * `kubectl apply --validate=strict`: docs/operator.md).
 *
 * Field types stay within what a structural CRD schema can say: durations and sizes are
 * strings here ("90d", "1Gi") and become numbers only when rendered into the relay's config.
 *
 * Over 400 lines as one unit: both resources share the field types and rules above, and
 * crds.ts generates the CRDs from this one module (one-click unsubscribe's are in ./links.ts).
 */
import { z } from 'zod';
import { dmarcSchema, spfSchema } from '../../relay/config.js';
import { EVENT_TYPES } from '../../relay/events/event.js';
import { linksSpecSchema, trackingSpecSchema, UNSUBSCRIBE_MAILTO_RULE, unsubscribeMailtoAllowed, unsubscribeSpecSchema } from './links.js';

export const GROUP = 'mailfleet.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

const DURATION = /^\d+(\.\d+)?(ms|s|m|h|d)$/;
const duration = (what: string) => z.string().regex(DURATION, `${what}: a duration such as 90s, 5m, 12h or 30d`);
const quantity = z.string().regex(/^\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$/, 'a Kubernetes quantity such as 512Mi or 2Gi');
// RE2 syntax (no lookaround): the API server compiles CRD patterns with Go's regexp.
const dnsLabel = '[a-z0-9]([a-z0-9-]*[a-z0-9])?';
const dnsName = z.string().regex(new RegExp(`^${dnsLabel}(\\.${dnsLabel})+$`), 'a lower-case domain name such as example.com');
const objectName = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a Kubernetes object name').max(253);
const resolver = z.string().regex(/^[0-9a-fA-F:.[\]]+$/, 'an IP address, or IP:port');
/** Fields passed to Kubernetes as they are (resources, affinity...): validated by the API server. */
const passthrough = (description: string) => z.record(z.string(), z.unknown()).meta({ 'x-kubernetes-preserve-unknown-fields': true }).describe(description);

const labelSelector = z
  .strictObject({
    matchLabels: z.record(z.string(), z.string()).optional(),
    matchExpressions: z
      .array(z.strictObject({ key: z.string(), operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']), values: z.array(z.string()).optional() }))
      .optional(),
  })
  .describe('A label selector, as in a Deployment. An empty selector selects every object in the namespace.');

export const conditionSchema = z.object({
  type: z.string(),
  status: z.enum(['True', 'False', 'Unknown']),
  observedGeneration: z.number().int().optional(),
  lastTransitionTime: z.string(),
  reason: z.string(),
  message: z.string(),
});
export type Condition = z.infer<typeof conditionSchema>;

// ---------------------------------------------------------------------------------------
// Webhooks (spec.events of a MailRelay and of a SenderDomain)
// ---------------------------------------------------------------------------------------

/** A Secret key usable as a signing key id: the relay's KEY_ID (relay/events/config.ts), `t` aside. A Secret key may also hold '.', which this refuses. */
export const WEBHOOK_KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** The relay signs with at most this many keys per webhook (relay/events/config.ts). */
export const WEBHOOK_MAX_KEYS = 4;
/** The prefix of the webhooks rendered from SenderDomains into a relay: a MailRelay's own may not use it, so no name can clash. */
export const SENDER_DOMAIN_WEBHOOK_PREFIX = 'sd-';

const webhookFields = {
  name: z
    .string()
    .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'a lower-case DNS label: letters, digits and dashes')
    .max(63)
    .describe('Names the webhook in the relay\'s metrics and logs, and its place in the outbox: renaming it starts it afresh.'),
  url: z
    .string()
    .regex(/^https?:\/\/[^\s/?#]+\S*$/, 'an http:// or https:// URL')
    .describe('Where batches of events are POSTed as JSON, signed with each key of secretName. https unless the receiver is in the cluster.'),
  secretName: objectName.describe('A Secret whose keys are the signing key ids and whose values the HMAC-SHA256 keys (at least 32 characters each): every batch is signed with each (1 to 4 keys; ids of letters, digits, _ and -). Rotation: add the new key, let receivers learn it, remove the old one.'),
  types: z.array(z.enum(EVENT_TYPES)).min(1).optional().describe('Only these event types. Omitted: every type.'),
  timeout: duration('timeout').optional().describe('How long to wait for the answer to one batch (the relay\'s default: 10s).'),
  batchSize: z.number().int().min(1).max(1000).optional().describe('Most events in one POST (the relay\'s default: 100).'),
  caSecretName: objectName.optional().describe('A Secret whose key `ca.crt` holds extra PEM CA certificates trusted for this https URL (a private CA).'),
};

/**
 * Webhook names unique in a list: zod here, and the API server itself by `x-kubernetes-list-type: map`
 * (which v1.20 checks too). At most 16, which also bounds the cost of the items' CEL rule.
 */
const webhookList = <T extends z.ZodType<{ name: string }>>(item: T, what: string) =>
  z
    .array(item)
    .max(16)
    .superRefine((hooks, ctx) => {
      const seen = new Set<string>();
      hooks.forEach((w, i) => {
        if (seen.has(w.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `webhook ${w.name} is listed twice` });
        seen.add(w.name);
      });
    })
    .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
    .describe(what);

// The rule twice: zod for `mailfleet render` and the operator, CEL for API servers 1.25 and later.
const RELAY_WEBHOOK_NAME_RULE = { rule: `!self.name.startsWith('${SENDER_DOMAIN_WEBHOOK_PREFIX}')`, message: `names starting with ${SENDER_DOMAIN_WEBHOOK_PREFIX} are kept for the webhooks of SenderDomains` };

const relayWebhookSchema = z
  .strictObject({
    ...webhookFields,
    senderDomains: z.array(dnsName).min(1).optional().describe('Only events of mail from these sender domains (and their subdomains). Omitted: every event.'),
  })
  .refine((w) => !w.name.startsWith(SENDER_DOMAIN_WEBHOOK_PREFIX), { path: ['name'], message: RELAY_WEBHOOK_NAME_RULE.message })
  .meta({ 'x-kubernetes-validations': [RELAY_WEBHOOK_NAME_RULE] });

const senderDomainWebhookSchema = z.strictObject(webhookFields);

export type WebhookSpec = z.output<typeof senderDomainWebhookSchema> & { senderDomains?: string[] | undefined };

// ---------------------------------------------------------------------------------------
// SenderDomain
// ---------------------------------------------------------------------------------------

/** A return path must be the sender domain or under it: the rule twice, zod for `mailfleet render` and the operator, CEL for API servers 1.25 and later. */
const RETURN_PATH_RULE = {
  rule: "!has(self.returnPath) || self.returnPath == self.domain || self.returnPath.endsWith('.' + self.domain)",
  message: 'returnPath must be spec.domain or a subdomain of it (e.g. bounces.example.com), so SPF stays aligned for DMARC',
};
export const returnPathAllowed = (s: { domain: string; returnPath?: string | undefined }) => s.returnPath === undefined || s.returnPath === s.domain || s.returnPath.endsWith(`.${s.domain}`);

export const senderDomainSpecSchema = z.strictObject({
  domain: dnsName.describe('The domain mail is sent from (header From and envelope sender).'),
  returnPath: dnsName
    .max(253)
    .optional()
    .describe('The return path domain (envelope sender `b+TOKEN@RETURN-PATH`): spec.domain or a subdomain of it, e.g. bounces.example.com. Its MX must name the public address of a MailRelay\'s bounces listener (spec.bounces), so reports after the 250 become events and suppressions; the operator adds its SPF record to status.records. Every MailRelay that selects this domain gets the namespace\'s return path key.'),
  dkim: z
    .strictObject({
      keyType: z.enum(['rsa-2048', 'ed25519', 'both']).default('both').describe('Keys to generate: both signs every message twice, so receivers without Ed25519 still verify.'),
      selectorPrefix: z.string().regex(/^[a-z0-9][a-z0-9-]*$/).max(40).default('mailfleet').describe('Selectors are PREFIX-N-rsa and PREFIX-N-ed; each rotation takes the next N.'),
      rotation: z
        .strictObject({
          period: duration('rotation.period').optional().describe('Rotate keys this often; omitted: never.'),
          overlap: duration('rotation.overlap').default('7d').describe('Keep the old key published this long after signing switches to the new one.'),
        })
        .prefault({}),
    })
    .prefault({}),
  spf: spfSchema.strict().prefault({}),
  dmarc: dmarcSchema.strict().prefault({}),
  mtaSts: z
    .strictObject({
      mode: z.enum(['enforce', 'testing', 'none']).default('testing'),
      mx: z.array(z.string().min(1)).min(1),
      maxAge: duration('mtaSts.maxAge').default('7d'),
    })
    .optional()
    .describe('Publish an MTA-STS policy for mail sent to this domain.'),
  tlsRpt: z.strictObject({ rua: z.array(z.string().regex(/^(mailto:|https:)\S+$/)).min(1) }).optional(),
  dnsEndpoint: z
    .strictObject({
      enabled: z.boolean().default(false).describe('Apply an external-dns DNSEndpoint with the records.'),
      ttl: z.number().int().min(60).default(300),
    })
    .prefault({}),
  verification: z
    .strictObject({
      resolvers: z.array(resolver).default([]).describe('DNS servers to check the records against; empty: the operator pod\'s resolver.'),
      interval: duration('verification.interval').default('10m'),
    })
    .prefault({}),
  events: z
    .strictObject({
      webhooks: webhookList(senderDomainWebhookSchema, 'Webhooks that get the events of mail from this domain (and its subdomains) only; every MailRelay that selects this domain sends them.').optional(),
    })
    .optional()
    .describe('What became of each message from this domain, sent to webhooks (docs/events.md).'),
  unsubscribe: unsubscribeSpecSchema.optional(),
  tracking: trackingSpecSchema.optional(),
})
  .refine(returnPathAllowed, { path: ['returnPath'], message: RETURN_PATH_RULE.message })
  .refine(unsubscribeMailtoAllowed, { path: ['unsubscribe', 'mailto'], message: UNSUBSCRIBE_MAILTO_RULE.message })
  .meta({ 'x-kubernetes-validations': [RETURN_PATH_RULE, UNSUBSCRIBE_MAILTO_RULE] });
export type SenderDomainSpec = z.output<typeof senderDomainSpecSchema>;

export const dnsRecordStatusSchema = z.object({
  name: z.string(),
  type: z.string(),
  value: z.string(),
  strings: z.array(z.string()),
  purpose: z.string(),
  selector: z.string().optional(),
  dns: z.enum(['match', 'missing', 'different', 'error', 'unknown']).describe('What DNS served at the last check.'),
  difference: z.string().optional(),
});

export const dkimKeyStatusSchema = z.object({
  selector: z.string(),
  algorithm: z.enum(['rsa-sha256', 'ed25519-sha256']),
  state: z.enum(['next', 'active', 'retiring']).describe('next: published, not signing yet; active: signing; retiring: published through the overlap.'),
  createdAt: z.string(),
  servedAt: z.string().optional().describe('When DNS was first seen serving its record.'),
  activatedAt: z.string().optional(),
  retireAt: z.string().optional(),
});
export type DkimKeyStatus = z.infer<typeof dkimKeyStatusSchema>;

export const senderDomainStatusSchema = z.object({
  observedGeneration: z.number().int().optional(),
  conditions: z.array(conditionSchema).optional(),
  secretName: z.string().optional(),
  activeSelectors: z.string().optional().describe('Selectors signing now, comma-separated (a printer column).'),
  keys: z.array(dkimKeyStatusSchema).optional(),
  nextRotationAt: z.string().optional(),
  records: z.array(dnsRecordStatusSchema).optional(),
  lastVerifiedAt: z.string().optional().describe('When a DNS check last changed what status says (checks that find the same are not written).'),
  warnings: z.array(z.string()).optional().describe('What the records cannot say: e.g. the MX record the return path needs, MailRelays that deliver differently, an unsubscribe URL no Ingress serves.'),
});

// ---------------------------------------------------------------------------------------
// MailRelay
// ---------------------------------------------------------------------------------------

/** The bounces listener of spec.bounces: its name and the port it binds in the pod (the Service NAME-bounces takes 25 to it). */
export const BOUNCES_LISTENER = 'bounces';
export const BOUNCES_PORT = 2525;

const relayListener = z.strictObject({
  name: z.string().regex(/^[a-z0-9-]+$/).max(15),
  port: z.number().int().min(1).max(65535),
  tls: z.enum(['none', 'starttls', 'implicit']).default('starttls'),
  auth: z.enum(['required', 'optional', 'none']).default('required'),
  trustedNetworks: z.array(z.string()).default([]).describe('Client ranges that may relay without AUTH (for example the cluster\'s pod CIDR, for applications that cannot AUTH).'),
});

export const autoscalingSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe('The operator sets replicas from the relays\' queue metrics. Off: replicas is left to the user, an HPA or KEDA.'),
    minReplicas: z.number().int().min(1).default(2),
    maxReplicas: z.number().int().min(1).default(10),
    interval: duration('autoscaling.interval').default('15s'),
    targets: z
      .strictObject({
        readyMessagesPerReplica: z.number().int().min(1).default(500).describe('Messages due now per replica.'),
        oldestReadySeconds: z.number().int().min(1).default(60).describe('Age of the oldest message due now.'),
        sessionsPerReplica: z.number().int().min(1).default(200).describe('Open SMTP sessions per replica.'),
      })
      .prefault({}),
    scaleDownStabilization: duration('autoscaling.scaleDownStabilization').default('300s'),
  })
  // The same rule twice: zod for `mailfleet render` and the operator (which also sees specs on
  // servers without CEL, such as v1.20), CEL for the API server (1.25 and later).
  .refine((a) => a.minReplicas <= a.maxReplicas, { path: ['minReplicas'], message: 'minReplicas must not exceed maxReplicas' })
  .meta({ 'x-kubernetes-validations': [{ rule: 'self.minReplicas <= self.maxReplicas', message: 'minReplicas must not exceed maxReplicas' }] });

/** Which keys of oauth2.secretName hold the client's credential: the Secret's keys, as the relay's file names. */
export const OAUTH2_CREDENTIAL_KEYS = {
  clientSecret: ['client-secret'],
  certificate: ['tls.crt', 'tls.key'],
  serviceAccount: ['service-account.json'],
} as const;
export type OAuth2Credential = keyof typeof OAUTH2_CREDENTIAL_KEYS;

/** The credential an oauth2 block uses: as given, or google's service account, or a client secret. */
export const oauth2Credential = (o: { provider: string; credential?: OAuth2Credential | undefined }): OAuth2Credential => o.credential ?? (o.provider === 'google' ? 'serviceAccount' : 'clientSecret');

// The rules twice again: zod for `mailfleet render` and the operator, CEL for API servers 1.25 and later.
const OAUTH2_RULES: { rule: string; message: string; path: string; holds: (o: SmarthostOAuth2) => boolean }[] = [
  { rule: "self.provider != 'microsoft' || (has(self.tenant) && has(self.clientId))", message: 'provider microsoft needs tenant and clientId', path: 'tenant', holds: (o) => o.provider !== 'microsoft' || (o.tenant !== undefined && o.clientId !== undefined) },
  { rule: "self.provider != 'generic' || (has(self.tokenUrl) && has(self.clientId))", message: 'provider generic needs tokenUrl and clientId', path: 'tokenUrl', holds: (o) => o.provider !== 'generic' || (o.tokenUrl !== undefined && o.clientId !== undefined) },
  { rule: "self.provider != 'google' || (!has(self.tenant) && !has(self.clientId))", message: 'provider google takes its client from the service account key, not tenant or clientId', path: 'clientId', holds: (o) => o.provider !== 'google' || (o.tenant === undefined && o.clientId === undefined) },
  { rule: "!has(self.credential) || ((self.credential == 'serviceAccount') == (self.provider == 'google'))", message: 'credential serviceAccount is for provider google, and google takes only it', path: 'credential', holds: (o) => o.credential === undefined || (o.credential === 'serviceAccount') === (o.provider === 'google') },
];

const smarthostOAuth2Schema = z
  .strictObject({
    provider: z.enum(['microsoft', 'google', 'generic']).describe('`microsoft`: Entra ID client credentials; `google`: a service account with domain-wide delegation; `generic`: client credentials at tokenUrl.'),
    user: z.string().min(1).describe('The mailbox the relay sends as (the XOAUTH2 user), e.g. relay@contoso.com; for google, the user the service account acts for.'),
    tenant: z.string().regex(/^[A-Za-z0-9.-]+$/, 'a tenant ID (a GUID) or a domain such as contoso.onmicrosoft.com').optional().describe('microsoft: the directory (tenant) ID or its domain.'),
    clientId: z.string().min(1).optional().describe('microsoft and generic: the application (client) ID.'),
    tokenUrl: z.string().regex(/^https?:\/\/\S+$/, 'a URL such as https://login.microsoftonline.us/TENANT/oauth2/v2.0/token').optional().describe('The token endpoint: required for generic; microsoft: set it for a national cloud; google: the key\'s token_uri by default.'),
    scope: z.string().min(1).optional().describe('Default for microsoft: https://outlook.office365.com/.default; google: https://mail.google.com/; generic: none sent.'),
    credential: z
      .enum(['clientSecret', 'certificate', 'serviceAccount'])
      .optional()
      .describe('Which keys of secretName hold the credential: `clientSecret`: key `client-secret`; `certificate`: a kubernetes.io/tls Secret, `tls.crt` and `tls.key` (the certificate registered with the application, private_key_jwt); `serviceAccount`: key `service-account.json`. Default: serviceAccount for google, clientSecret otherwise.'),
    secretName: objectName.describe('The Secret with the credential, mounted read-only in the relay pods.'),
  })
  .superRefine((o, ctx) => {
    for (const r of OAUTH2_RULES) if (!r.holds(o)) ctx.addIssue({ code: 'custom', path: [r.path], message: r.message });
  })
  .meta({ 'x-kubernetes-validations': OAUTH2_RULES.map(({ rule, message }) => ({ rule, message })) });
interface SmarthostOAuth2 {
  provider: 'microsoft' | 'google' | 'generic';
  tenant?: string | undefined;
  clientId?: string | undefined;
  tokenUrl?: string | undefined;
  credential?: OAuth2Credential | undefined;
}

export const mailRelaySpecSchema = z.strictObject({
  replicas: z.number().int().min(0).default(2).describe('Relay pods when autoscaling is off (the scale subresource writes here).'),
  image: z.string().optional().describe('Relay image; default: the operator\'s own image.'),
  hostname: z.string().regex(/^[a-z0-9.-]+$/).optional().describe('Name in the SMTP greeting, EHLO to next hops and Received headers: for the mx route, a public name whose PTR matches the egress address. Default: NAME.NAMESPACE.svc.'),
  listeners: z.array(relayListener).min(1).default([{ name: 'submission', port: 587, tls: 'starttls', auth: 'required', trustedNetworks: [] }]),
  tlsSecretName: objectName.optional().describe('A kubernetes.io/tls Secret (cert-manager writes these) for STARTTLS and implicit TLS.'),
  usersSecretName: objectName.optional().describe('A Secret whose key `users` holds `name:scrypt-hash` lines (mailfleet hash-password).'),
  senderDomainSelector: labelSelector.optional().describe('SenderDomains in this namespace this relay signs for; omitted: none (any sender domain, unsigned).'),
  delivery: z
    .strictObject({
      route: z.enum(['mx', 'smarthost']).default('mx'),
      smarthost: z
        .strictObject({
          host: z.string().min(1),
          port: z.number().int().min(1).max(65535).default(587),
          tls: z.enum(['starttls', 'implicit']).default('starttls'),
          credentialsSecretName: objectName.optional().describe('A Secret with keys `username` and `password`. Or oauth2.'),
          oauth2: smarthostOAuth2Schema.optional().describe('OAuth 2.0 (SASL XOAUTH2) instead of a user name and password: Microsoft 365 after Basic authentication ends, Google Workspace, any token endpoint (docs/providers.md).'),
        })
        .refine((s) => !(s.oauth2 && s.credentialsSecretName), { path: ['oauth2'], message: 'give either credentialsSecretName or oauth2, not both' })
        .meta({ 'x-kubernetes-validations': [{ rule: '!(has(self.oauth2) && has(self.credentialsSecretName))', message: 'give either credentialsSecretName or oauth2, not both' }] })
        .optional(),
      dnsServers: z.array(resolver).default([]),
      egressAddresses: z.array(z.string()).default([]).describe('Public addresses mail leaves from, for SPF.'),
      maxConnections: z.number().int().min(1).default(100),
      maxConnectionsPerDestination: z.number().int().min(1).default(20),
    })
    .prefault({})
    .meta({ 'x-kubernetes-validations': [{ rule: "self.route != 'smarthost' || has(self.smarthost)", message: 'route smarthost needs smarthost.host' }] }),
  limits: z
    .strictObject({
      maxMessageSize: quantity.default('25Mi'),
      maxRecipients: z.number().int().min(1).default(100),
      maxConnections: z.number().int().min(1).default(1000),
      messagesPerUserPerMinute: z.number().int().min(1).default(1200),
    })
    .prefault({}),
  retry: z
    .strictObject({
      minBackoff: duration('retry.minBackoff').default('1m'),
      maxBackoff: duration('retry.maxBackoff').default('1h'),
      lifetime: duration('retry.lifetime').default('5d'),
    })
    .prefault({}),
  spool: z.strictObject({ sizeLimit: quantity.default('2Gi').describe('Size limit of the spool emptyDir.') }).prefault({}),
  autoscaling: autoscalingSchema.prefault({}),
  events: z
    .strictObject({
      webhooks: webhookList(relayWebhookSchema, 'Where the relay sends what became of each message (received, delivered, deferred, bounced...). The webhooks of the SenderDomains it selects are added.').optional(),
      maxOutboxBytes: quantity.optional().describe('Most bytes of events kept in the spool for webhooks that are not taking them (the relay\'s default: 256Mi); past it the oldest are dropped and counted.'),
    })
    .optional()
    .describe('Events and webhooks (docs/events.md, docs/operator.md#webhooks).'),
  bounces: z
    .strictObject({
      enabled: z.boolean().default(false).describe(`A bounces listener (port ${BOUNCES_PORT} in the pod, 25 on the Service NAME-bounces): it takes only reports to the return paths (spec.returnPath of the SenderDomains), from anyone, and relays nothing. Publish an MX record for each return path domain naming this Service's public address.`),
      mxHost: dnsName
        .max(253)
        .optional()
        .describe("The public host name of the Service NAME-bounces (an A/AAAA record for its load balancer, e.g. made by external-dns from its annotations): the SenderDomains' return paths get an MX record naming it in status.records (and their DNSEndpoint)."),
      service: z
        .strictObject({
          type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer']).default('LoadBalancer').describe('The Service NAME-bounces: LoadBalancer, so other mail servers reach it on port 25.'),
          annotations: z.record(z.string(), z.string()).optional().describe('Annotations of the Service (a cloud\'s load balancer settings, external-dns hostnames).'),
          loadBalancerIP: z.string().optional().describe('A fixed address for the load balancer, where the cloud takes one.'),
        })
        .prefault({}),
    })
    .optional()
    .describe('Reports after the 250 (bounces and complaints sent to the return paths): docs/operator.md#bounces.'),
  links: linksSpecSchema.optional(),
  terminationGracePeriodSeconds: z.number().int().min(10).default(60).describe('Time to drain and hand off mail on scale-down.'),
  resources: passthrough('Container resources, as in a Pod.').optional(),
  nodeSelector: z.record(z.string(), z.string()).optional(),
  tolerations: z.array(z.record(z.string(), z.unknown()).meta({ 'x-kubernetes-preserve-unknown-fields': true })).optional(),
  affinity: passthrough('Pod affinity, as in a Pod.').optional(),
})
  // zod only: a CEL rule over spec.listeners (no maxItems) could not be costed by the API
  // server; the relay's own config check refuses two listeners on one port as well (Invalid).
  .superRefine((s, ctx) => {
    if (!s.bounces?.enabled) return;
    s.listeners.forEach((l, i) => {
      if (l.name === BOUNCES_LISTENER) ctx.addIssue({ code: 'custom', path: ['listeners', i, 'name'], message: `the name ${BOUNCES_LISTENER} is kept for the bounces listener of spec.bounces` });
      if (l.port === BOUNCES_PORT) ctx.addIssue({ code: 'custom', path: ['listeners', i, 'port'], message: `port ${BOUNCES_PORT} is the bounces listener's (spec.bounces)` });
    });
  });
export type MailRelaySpec = z.output<typeof mailRelaySpecSchema>;

export const mailRelayStatusSchema = z.object({
  observedGeneration: z.number().int().optional(),
  conditions: z.array(conditionSchema).optional(),
  replicas: z.number().int().optional(),
  readyReplicas: z.number().int().optional(),
  selector: z.string().optional().describe('Label selector of the relay pods (the scale subresource reads it).'),
  endpoint: z.string().optional().describe('In-cluster SMTP endpoint, host:port.'),
  queue: z.object({ ready: z.number().int(), deferred: z.number().int(), inflight: z.number().int() }).optional(),
  queueSummary: z.string().optional().describe('Messages in the queue (a printer column).'),
  lastScale: z.object({ time: z.string(), from: z.number().int(), to: z.number().int(), reason: z.string() }).optional().describe('The autoscaler\'s last change of replicas, and why.'),
  autoscaler: z
    .object({
      desiredReplicas: z.number().int().optional().describe('Replicas the autoscaler wants (autoscaling on); the Deployment follows it.'),
      lastDecision: z.string().optional().describe('The last decision in words, with its inputs (also an Event when replicas change).'),
      state: z.record(z.string(), z.unknown()).meta({ 'x-kubernetes-preserve-unknown-fields': true }).optional().describe('What the next decision needs (stabilisation window, rate history).'),
    })
    .optional(),
});

/**
 * A spec's validation issues, one per problem and path: zod reports the unknown fields of an
 * object as one issue on the object; here each is its own, at its own path.
 */
export function specIssues(issues: readonly z.core.$ZodIssue[]): z.core.$ZodIssue[] {
  // Custom issues: the key is in the path now, and formatIssues must not name it again.
  return issues.flatMap((issue): z.core.$ZodIssue[] => (issue.code === 'unrecognized_keys' ? issue.keys.map((key) => ({ code: 'custom', input: issue.input, path: [...issue.path, key], message: 'unknown field' })) : [issue]));
}

/** A resource as the API server stores it. */
export interface Resource<Spec, Status> {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; uid?: string; generation?: number; resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string>; deletionTimestamp?: string; finalizers?: string[] };
  spec: Spec;
  status?: Status;
}
export type SenderDomain = Resource<SenderDomainSpec, z.output<typeof senderDomainStatusSchema>>;
export type MailRelay = Resource<MailRelaySpec, z.output<typeof mailRelayStatusSchema>>;
