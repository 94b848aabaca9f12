/**
 * Every condition a MailRelay and a SenderDomain report and every reason they give: the one
 * list the controllers may set (setCondition takes only these reasons) and the source of
 * docs/conditions.md (`npm run docs`; a test keeps it true). Users, alert rules and GitOps
 * health checks read these names: change one only as an API change.
 */

export const REASONS = {
  // MailRelay
  Available: 'every desired relay pod is available (the Deployment\'s availableReplicas)',
  NotAvailable: 'fewer relay pods are available than desired; the message carries the Deployment\'s own words, e.g. MinimumReplicasUnavailable',
  ScaledToZero: 'spec.replicas (or the autoscaler) asks for no relay pods',
  Creating: 'the Deployment is being created',
  RollingOut: 'a rollout is under way: the Deployment controller has not seen the latest spec, pods are not all at the new version, old pods still run, or new ones are not available yet',
  RolledOut: 'every replica runs the current version and is available',
  ProgressDeadlineExceeded: 'the rollout passed the Deployment\'s progress deadline (see RolloutStuck)',
  RolloutStuck: 'the rollout passed the Deployment\'s progress deadline: look at the new pods (image, probes, resources)',
  Missing: 'a Secret the relay needs (TLS, users, smarthost credentials or OAuth 2.0 client, only with route smarthost, a webhook\'s signing keys or CA, the namespace\'s return path key mailfleet-bounces-key or unsubscribe links key mailfleet-links-key, which the operator makes) or a selected SenderDomain\'s keys does not exist yet; nothing is applied; looked at again when the Secret appears, and every 15 s',
  WebhookKeysInvalid: 'a webhook\'s Secret (spec.events.webhooks[].secretName, of the MailRelay or a selected SenderDomain) has no key, a key that cannot be a signing key id (1 to 64 letters, digits, _ or -, e.g. not k2026.12), or more than 4 keys; the message names the Secret and the keys; nothing is applied (the running pods keep their config and keep the webhook\'s events) until the Secret\'s keys change',
  Invalid: 'the relay would refuse the configuration rendered from this spec, or a listener takes the links endpoint\'s port 8090 or name links; the message names the fields',
  ApplyFailed: 'the API server refused an object; the message names each object, the request and the server\'s words; retried with backoff',
  APINotServed: 'an object whose API the cluster does not serve was left out (a PodDisruptionBudget before Kubernetes 1.21, the Ingress NAME-links before 1.19, a ServiceMonitor without the Prometheus Operator, a DNSEndpoint without external-dns)',
  Authenticated: 'a relay pod authenticated to the smarthost and none failed at its last attempt (read from the pods\' /metrics each autoscaler interval)',
  NotYetAttempted: 'no relay pod has authenticated to the smarthost yet: a relay does when it first has mail to deliver',
  BasicAuthDisabled: 'the smarthost no longer takes a user name and password (Microsoft 365: 535 5.7.139, 550 5.7.30): use spec.delivery.smarthost.oauth2',
  SmtpAuthDisabled: 'SMTP AUTH is turned off for the mailbox or the tenant (Microsoft 365): enable Authenticated SMTP for the sending mailbox',
  CredentialsRejected: 'the smarthost refused the password or the access token (535 5.7.3, 5.7.8): check the Secret; OAuth 2.0: SMTP.SendAsApp with admin consent, an Exchange service principal and FullAccess to oauth2.user',
  TokenClientRejected: 'the token endpoint refused the client (invalid_client): a wrong, expired or revoked client secret, or a certificate the app registration does not have',
  TokenNotAuthorized: 'the token endpoint will not give the client this token: admin consent or the scope missing, domain-wide delegation not set up, or tenant or clientId wrong',
  TokenEndpointUnreachable: 'the token endpoint did not answer, or not with a token: check egress to it and oauth2.tokenUrl; mail waits',
  CredentialsUnreadable: 'the relay cannot read or parse the OAuth 2.0 client secret, certificate, key or service account key from the Secret (oauth2.secretName, oauth2.credential)',
  // Both kinds
  InvalidSpec: 'the spec does not match the schema (e.g. minReplicas above maxReplicas, a SenderDomain\'s returnPath outside its domain, or unsubscribe.mailto without a returnPath, on a server too old for the CRD\'s CEL rules); the message names the field',
  Reconciled: 'nothing is wrong: every reference resolved and every object applied',
  // SenderDomain
  Signing: 'an active DKIM key signs for each algorithm',
  Generating: 'the DKIM keys are being made',
  RecordsServed: 'DNS serves every recommended record as recommended',
  RecordsNotServed: 'DNS does not serve some recommended records (or serves them differently); the message lists them',
  Ready: 'the keys sign and DNS serves every record',
  WaitingForKeys: 'not ready until the DKIM keys exist',
  WaitingForDNS: 'not ready until DNS serves the recommended records',
  RequirementsMet: 'the domain meets what Gmail, Yahoo and Outlook.com ask of bulk senders: SPF, DKIM and DMARC served, forward-confirmed reverse DNS for every egress address, one-click unsubscribe, TLS to the next hop',
  RequirementsNotMet: 'some bulk sender requirement is not met; the message names each failing check (SPF, DKIM, DMARC, FCrDNS, MailRelay, one-click unsubscribe, TLS) and what to do (docs/operator.md#bulksenderready)',
} as const;

export type Reason = keyof typeof REASONS;

/** Each kind's conditions: what True means, and the reasons each can carry. */
export const CONDITIONS: Record<'MailRelay' | 'SenderDomain', Record<string, { trueWhen: string; reasons: readonly Reason[] }>> = {
  MailRelay: {
    Ready: { trueWhen: 'every desired relay pod is available', reasons: ['Available', 'NotAvailable', 'ScaledToZero', 'Missing', 'WebhookKeysInvalid', 'Invalid', 'InvalidSpec'] },
    Progressing: { trueWhen: 'a rollout is under way', reasons: ['RollingOut', 'Creating', 'RolledOut', 'ProgressDeadlineExceeded'] },
    Degraded: { trueWhen: 'the operator could not do all it should', reasons: ['Reconciled', 'Missing', 'WebhookKeysInvalid', 'InvalidSpec', 'Invalid', 'ApplyFailed', 'RolloutStuck', 'APINotServed'] },
    SmarthostAuthenticated: {
      trueWhen: 'route smarthost with credentials (credentialsSecretName or oauth2) only: a relay pod authenticated to the smarthost and no pod\'s last attempt failed (False names the reason most pods give; a Warning Event when it turns False)',
      reasons: ['Authenticated', 'NotYetAttempted', 'BasicAuthDisabled', 'SmtpAuthDisabled', 'CredentialsRejected', 'TokenClientRejected', 'TokenNotAuthorized', 'TokenEndpointUnreachable', 'CredentialsUnreadable'],
    },
  },
  SenderDomain: {
    KeysReady: { trueWhen: 'an active key signs for each algorithm', reasons: ['Signing', 'Generating'] },
    DNSVerified: { trueWhen: 'DNS serves every recommended record', reasons: ['RecordsServed', 'RecordsNotServed'] },
    Ready: { trueWhen: 'the keys sign and DNS serves every record', reasons: ['Ready', 'WaitingForKeys', 'WaitingForDNS', 'InvalidSpec'] },
    Degraded: { trueWhen: 'the operator could not do all it should', reasons: ['Reconciled', 'ApplyFailed', 'APINotServed'] },
    BulkSenderReady: {
      trueWhen: 'the domain meets the bulk sender requirements of Gmail, Yahoo and Outlook.com: its SPF, DKIM and DMARC records served, the PTR of each egress address of the MailRelays that select it naming a host that resolves back to it (FCrDNS), spec.unsubscribe set, and no MailRelay sending in plain text',
      reasons: ['RequirementsMet', 'RequirementsNotMet'],
    },
  },
};

/** docs/conditions.md. */
export function conditionReference(): string {
  const kinds = Object.entries(CONDITIONS).map(([kind, conditions]) => {
    const rows = Object.entries(conditions).map(([type, c]) => `| \`${type}\` | ${c.trueWhen} | ${c.reasons.map((r) => `\`${r}\``).join(', ')} |`);
    return `## ${kind}\n\n| condition | True when | reasons |\n| --- | --- | --- |\n${rows.join('\n')}\n`;
  });
  const reasons = Object.entries(REASONS).map(([r, means]) => `| \`${r}\` | ${means} |`);
  return `# Conditions and their reasons\n\nGenerated from \`operator/controllers/reasons.ts\` by \`npm run docs\`; do not edit by hand. Each condition carries \`observedGeneration\`; \`kubectl describe\` shows its message, which says what is wrong in words.\n\n${kinds.join('\n')}\n## Reasons\n\n| reason | means |\n| --- | --- |\n${reasons.join('\n')}\n`;
}
