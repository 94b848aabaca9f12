/**
 * The webhooks a relay sends events to, as the MailRelay render needs them (pure): its own
 * and those of the SenderDomains it selects (named apart, filtered to their domain), the
 * signing key ids from each webhook Secret's key names, and the names of their volumes.
 */
import crypto from 'node:crypto';
import { SENDER_DOMAIN_WEBHOOK_PREFIX, WEBHOOK_KEY_ID, WEBHOOK_MAX_KEYS, type MailRelay, type SenderDomain, type WebhookSpec } from '../api/v1alpha1.js';

const hash10 = (s: string) => crypto.createHash('sha256').update(s).digest('hex').slice(0, 10);

/** A DNS label of at most 63 characters: the name itself, or its start and a hash of the whole (deterministic, distinct for distinct names). */
export function label63(name: string): string {
  if (name.length <= 63 && /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(name)) return name;
  return `${name.replace(/[^a-z0-9-]/g, '-').slice(0, 52).replace(/-+$/, '')}-${hash10(name)}`;
}

/** Where each webhook's signing keys (its Secret, whole) and CA certificates are mounted. */
export const WEBHOOKS_DIR = '/etc/mailfleet/webhooks';
export const WEBHOOK_CA_DIR = '/etc/mailfleet/webhook-ca';

/** A webhook as the relay gets it: its rendered name (unique in the relay), its spec and where its spec is (for messages). */
export interface RelayWebhook {
  name: string;
  spec: WebhookSpec;
  field: string;
  senderDomains?: string[];
}

/**
 * Every webhook a relay sends to: its own, then those of each SenderDomain it selects, for
 * that domain's mail only, named sd-<SenderDomain>-<webhook> (63 characters at most; a
 * MailRelay's own webhooks may not start with sd-, so none clash).
 */
export function relayWebhooks(relay: MailRelay, domains: readonly SenderDomain[]): RelayWebhook[] {
  const own = (relay.spec.events?.webhooks ?? []).map((w): RelayWebhook => ({ name: w.name, spec: w, field: `spec.events.webhooks[${w.name}]`, ...(w.senderDomains ? { senderDomains: w.senderDomains } : {}) }));
  const fromDomains = domains.flatMap((d) =>
    (d.spec.events?.webhooks ?? []).map((w) => ({
      // SenderDomain names may hold dots, which label63 replaces (with a hash).
      base: label63(`${SENDER_DOMAIN_WEBHOOK_PREFIX}${d.metadata.name}-${w.name}`),
      whole: `${d.metadata.name}/${w.name}`,
      hook: { spec: w, field: `SenderDomain ${d.metadata.name} spec.events.webhooks[${w.name}]`, senderDomains: [d.spec.domain] },
    })),
  );
  // SenderDomain a-b's webhook c and SenderDomain a's webhook b-c would both be sd-a-b-c: those
  // that meet take a hash of their whole name instead.
  const count = new Map<string, number>();
  for (const f of fromDomains) count.set(f.base, (count.get(f.base) ?? 0) + 1);
  return [...own, ...fromDomains.map((f): RelayWebhook => ({ name: count.get(f.base)! > 1 ? `${f.base.slice(0, 52).replace(/-+$/, '')}-${hash10(f.whole)}` : f.base, ...f.hook }))];
}

/** Volume names are DNS labels too: `wh-` (keys) or `whca-` (CA) and the webhook's name, hashed when too long; two prefixes, so webhook x's CA and webhook x-ca's keys do not meet. */
export const webhookVolume = (w: RelayWebhook, prefix: 'wh-' | 'whca-') => label63(`${prefix}${w.name}`);

/**
 * The signing keys of each webhook from its Secret's key names, or what is wrong with them.
 * Every key of the Secret must be a key id the relay takes: a key the relay could not take
 * (k2026.12, with the dot a Secret key allows) is named, not silently left out.
 */
export function webhookKeys(hooks: readonly RelayWebhook[], inputs: { secretKeys: (name: string) => readonly string[] }): { keys: Map<string, string[]>; problems: string[] } {
  const keys = new Map<string, string[]>();
  const problems: string[] = [];
  for (const w of hooks) {
    const names = [...inputs.secretKeys(w.spec.secretName)].sort();
    const bad = names.filter((k) => !WEBHOOK_KEY_ID.test(k) || k === 't');
    const where = `Secret ${w.spec.secretName} (${w.field}.secretName)`;
    if (!names.length) problems.push(`${where} has no keys: add one, e.g. kubectl create secret generic ${w.spec.secretName} --from-literal=k1=$(openssl rand -base64 32)`);
    else if (bad.length) problems.push(`${where}: key${bad.length > 1 ? 's' : ''} ${bad.map((k) => `"${k}"`).join(', ')} ${bad.length > 1 ? 'cannot be signing key ids' : 'cannot be a signing key id'} (1 to 64 letters, digits, _ or -; not t): rename ${bad.length > 1 ? 'them' : 'it'}`);
    else if (names.length > WEBHOOK_MAX_KEYS) problems.push(`${where} has ${names.length} keys; a webhook signs with at most ${WEBHOOK_MAX_KEYS}: remove the retired ones`);
    keys.set(w.name, names);
  }
  return { keys, problems };
}
