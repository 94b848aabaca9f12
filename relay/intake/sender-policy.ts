/**
 * Sender policy (pure): which senders a logged-in user may use, in the envelope (MAIL FROM)
 * and in every header field that names the sender (From, Sender, Resent-From, Resent-Sender).
 * A client that relays from a trusted network without logging in is not held to it.
 */
import { parseMailbox } from '../address.js';
import type { RelayConfig } from '../config.js';
import { originatorAddresses, type HeaderFacts } from '../headers.js';
import { refusal, type SmtpRefusal } from '../refusals.js';

/**
 * A sender domain the user may use: a configured domain or a subdomain of one, allowed for the
 * user. An address that does not parse as one mailbox is no sender at all (see parseMailbox).
 */
export function senderAllowed(config: RelayConfig, user: string, address: string): boolean {
  if (!config.senderDomains.length) return true;
  const domain = parseMailbox(address)?.domain;
  if (!domain) return false;
  return config.senderDomains.some((d) => (domain === d.domain || domain.endsWith(`.${d.domain}`)) && (!d.users || d.users.includes(user)));
}

/** Why an address was refused as a sender, for the reply. */
export function senderProblem(user: string, address: string): string {
  const domain = address ? parseMailbox(address)?.domain : '<>';
  return domain ? `user ${user} may not send from ${domain}` : 'not a single valid mailbox (one @, outside quotes)';
}

/** MAIL FROM by a logged-in user: refused when the address is not one of the user's senders. */
export function envelopeSenderRefusal(config: RelayConfig, user: string, address: string): SmtpRefusal | undefined {
  return senderAllowed(config, user, address) ? undefined : refusal('senderDenied', { address, problem: senderProblem(user, address) });
}

/**
 * A logged-in user's message: every field that names the sender, not From alone (Sender and
 * Resent-* are shown by mail programs too, "on behalf of", and are as much an impersonation),
 * and a From field there must be.
 */
export function headerSenderRefusal(config: RelayConfig, user: string, facts: HeaderFacts): SmtpRefusal | undefined {
  const originators = originatorAddresses(facts);
  const bad = originators.find((o) => !senderAllowed(config, user, o.address));
  if (bad) return refusal('headerSenderDenied', { field: bad.field, address: bad.address, problem: senderProblem(user, bad.address) });
  return originators.some((o) => o.field === 'From') ? undefined : refusal('noFrom');
}
