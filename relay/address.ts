/** The domain part of an address, lower-cased (intake's sender policy and the mx route both need it). */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/**
 * The configured domain an address belongs to (its domain, or a parent of it, among `domains`),
 * or undefined: a metric label bounded to the domains the operator listed.
 */
export function configuredDomainOf(address: string, domains: readonly string[]): string | undefined {
  const domain = domainOf(address);
  let best: string | undefined;
  for (const d of domains) {
    const lower = d.toLowerCase();
    if ((domain === lower || domain.endsWith(`.${lower}`)) && (!best || lower.length > best.length)) best = lower;
  }
  return best;
}

const DOMAIN = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$|^\[IPv6:[0-9A-Fa-f:.]+\]$/;
const DOT_ATOM = /^[A-Za-z0-9!#$&'*+/=?^_`{|}~\u0080-\uffff-]+(?:\.[A-Za-z0-9!#$&'*+/=?^_`{|}~\u0080-\uffff-]+)*$/;
const QUOTED = /^"(?:[^"\\\r\n\0]|\\[^\r\n\0])*"$/;

/**
 * A mailbox `local@domain` split where it must be (RFC 5321 4.1.2): one @ outside a quoted
 * local part, a dot-atom or quoted local part, a domain name or address literal; undefined for
 * anything else. The sender policy reads the domain only from addresses that parse: reading
 * `a@evil.test@example.test` as example.test (the last @) let a user send as evil.test.
 */
export function parseMailbox(address: string): { local: string; domain: string } | undefined {
  const at = address.startsWith('"') ? address.indexOf('@', closingQuote(address) + 1) : address.indexOf('@');
  if (at <= 0) return undefined;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (!(DOT_ATOM.test(local) || QUOTED.test(local)) || !DOMAIN.test(domain)) return undefined;
  return { local, domain: domain.toLowerCase() };
}

function closingQuote(address: string): number {
  for (let i = 1; i < address.length; i++) {
    if (address[i] === '\\') i++;
    else if (address[i] === '"') return i;
  }
  return address.length;
}
