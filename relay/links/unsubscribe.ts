/**
 * One-click unsubscribe (RFC 8058, and RFC 2369's List-Unsubscribe): which messages get the
 * header fields and what they say (pure). The fields go into the header at intake, beside the
 * trace fields, so the DKIM signature covers them (relay/dkim.ts signs and over-signs both).
 *
 * A link names one recipient, so only a message to one recipient gets them: a mailbox
 * provider POSTs the URL without saying who clicked, and bulk mail goes one message per
 * recipient. A message that has its own List-Unsubscribe keeps it, and gets nothing from us.
 */
import { linkToken, type LinkSubject } from './token.js';

/** The mailbox at a return path domain that takes unsubscribe mail (a `bounces` listener). */
export const UNSUBSCRIBE_MAILBOX = 'unsubscribe';
/** The path under the links URL. */
export const UNSUBSCRIBE_PATH = '/u/';

export interface UnsubscribeOwner {
  senderDomain: string;
  url: string;
  /** unsubscribe@ this domain, when the mailto is on. */
  mailtoDomain?: string;
}

/** The sender domains with one-click unsubscribe, as the relay's config lists them. */
export function unsubscribeOwners(senderDomains: readonly { domain: string; returnPath?: string; unsubscribe?: { url: string; mailto?: boolean } }[]): UnsubscribeOwner[] {
  return senderDomains.flatMap((d) => {
    if (!d.unsubscribe) return [];
    const mailto = d.unsubscribe.mailto ?? !!d.returnPath;
    return [{ senderDomain: d.domain.toLowerCase(), url: d.unsubscribe.url.replace(/\/+$/, ''), ...(mailto && d.returnPath ? { mailtoDomain: d.returnPath.toLowerCase() } : {}) }];
  });
}

/** The owner of mail from `sender` (the domain or a parent of it). */
export function ownerOf(sender: string, owners: readonly UnsubscribeOwner[]): UnsubscribeOwner | undefined {
  const domain = sender.slice(sender.lastIndexOf('@') + 1).toLowerCase();
  return owners.find((o) => domain === o.senderDomain || domain.endsWith(`.${o.senderDomain}`));
}

export type UnsubscribeDecision = { add: string; subject: LinkSubject } | { skip: 'not_configured' | 'has_own' | 'several_recipients' };

/**
 * The List-Unsubscribe and List-Unsubscribe-Post fields to add to a message (CRLF-ended), or
 * why none are added.
 */
export function unsubscribeFields(m: { sender: string; recipients: readonly string[]; queueId: string; hasListUnsubscribe: boolean }, owners: readonly UnsubscribeOwner[], key: string | undefined): UnsubscribeDecision {
  const owner = m.sender && key ? ownerOf(m.sender, owners) : undefined;
  if (!owner) return { skip: 'not_configured' };
  if (m.hasListUnsubscribe) return { skip: 'has_own' };
  if (m.recipients.length !== 1) return { skip: 'several_recipients' };
  const subject: LinkSubject = { kind: 'u', senderDomain: owner.senderDomain, queueId: m.queueId, recipient: m.recipients[0]! };
  const token = linkToken(subject, key!);
  const uris = [`<${owner.url}${UNSUBSCRIBE_PATH}${token}>`];
  if (owner.mailtoDomain) uris.push(`<mailto:${UNSUBSCRIBE_MAILBOX}@${owner.mailtoDomain}?subject=${token}>`);
  // One URI per line (folded): a token is ~100-200 characters, and lines stay under 998.
  return { add: `List-Unsubscribe: ${uris.join(',\r\n ')}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n`, subject };
}

/** The token in an unsubscribe mail's Subject (mail programs send the mailto's subject as given, some with a prefix). */
export function tokenInSubject(subject: string): string | undefined {
  return /([A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{22})(?![A-Za-z0-9_-])/.exec(subject)?.[1];
}
