/**
 * Destination providers: recipient domains whose MX hosts belong to one operator (Gmail hosts
 * thousands of domains on google.com MX hosts) share that operator's limits (MX rollup), as
 * KumoMTA's shaping and Postfix's transport tables do. The `provider` metric label uses the
 * same grouping, so it stays bounded: built-in names, configured names, `other`, `smarthost`.
 */
import type { ProviderConfig } from '../config.js';

export interface Provider {
  name: string;
  mxHosts: string[];
  maxConnections?: number;
  messagesPerMinute?: number;
  messagesPerHour?: number;
  /** Seconds the whole provider pauses after a reply that says it is throttling. */
  throttleBackoff: number;
  requireTls: boolean;
}

/**
 * Starting points for a sending address with no reputation yet, below what the providers are
 * known to tolerate; docs/providers.md explains them and how to override them by name.
 */
export const BUILT_IN_PROVIDERS: readonly Provider[] = [
  { name: 'gmail', mxHosts: ['google.com', 'googlemail.com'], maxConnections: 10, messagesPerMinute: 1200, throttleBackoff: 300, requireTls: false },
  { name: 'microsoft', mxHosts: ['protection.outlook.com', 'outlook.com', 'hotmail.com'], maxConnections: 10, messagesPerMinute: 600, throttleBackoff: 300, requireTls: false },
  { name: 'yahoo', mxHosts: ['yahoodns.net', 'yahoo.com', 'aol.com'], maxConnections: 5, messagesPerMinute: 300, throttleBackoff: 600, requireTls: false },
  { name: 'apple', mxHosts: ['mail.icloud.com', 'icloud.com'], maxConnections: 5, messagesPerMinute: 300, throttleBackoff: 300, requireTls: false },
];

/** Mail that matches no provider. */
export const OTHER = 'other';

/** Built-in providers with the configured ones merged over them by name (fields given win). */
export function providerTable(configured: readonly ProviderConfig[]): Provider[] {
  const table = new Map<string, Provider>(BUILT_IN_PROVIDERS.map((p) => [p.name, { ...p }]));
  for (const c of configured) {
    const base = table.get(c.name);
    const defined = Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)) as Partial<Provider>;
    // A configured provider without mxHosts keeps the built-in ones (override limits only).
    if (base && !c.mxHosts.length) delete defined.mxHosts;
    table.set(c.name, { ...(base ?? { mxHosts: [], throttleBackoff: 300, requireTls: false }), ...defined, name: c.name });
  }
  return [...table.values()];
}

const normalise = (host: string) => host.toLowerCase().replace(/\.$/, '');

/** Whether an MX host name is `suffix` or ends in `.suffix`. */
export function hostMatches(host: string, suffix: string): boolean {
  const h = normalise(host);
  const s = normalise(suffix).replace(/^\*?\./, '');
  return h === s || h.endsWith(`.${s}`);
}

/** The provider of a domain, from the names of its MX hosts (the most preferred that matches). */
export function classifyMx(mxHosts: readonly string[], providers: readonly Provider[]): Provider | undefined {
  for (const host of mxHosts) {
    const match = providers.find((p) => p.mxHosts.some((s) => hostMatches(host, s)));
    if (match) return match;
  }
  return undefined;
}

// Greylisting ("451 4.7.1 greylisted, try again later") is about one message, not the sender:
// it is deliberately not here. Nor is "too many recipients" (a per-message limit).
const THROTTLE_TEXT = /rate.?limit|throttl|too many (connections|messages|sessions|concurrent)|unusual rate|temporarily deferred|server busy|excessive|sending rate|volume/i;
const THROTTLE_CODES = new Set(['4.7.28', '4.7.500', '4.7.650', '4.7.651']);

/**
 * A temporary reply that says the provider is limiting us as a sender, not that this message
 * or mailbox has a problem: the whole provider should slow down, not just this message.
 */
export function isThrottling(reply: string, statusCode: string): boolean {
  if (!statusCode.startsWith('4')) return false;
  return THROTTLE_CODES.has(statusCode) || THROTTLE_TEXT.test(reply);
}
