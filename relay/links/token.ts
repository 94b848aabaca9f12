/**
 * The tokens in the links the relay puts in mail (`URL/u/TOKEN`, and the subject of the
 * unsubscribe mailto): what they are about, in the clear, and an HMAC over it keyed by the
 * fleet's `links.keyFile`, so any relay of the fleet serves a link without a lookup and
 * refuses one that was made up or altered. Pure.
 *
 * TOKEN = base64url(KIND "\n" SENDER-DOMAIN "\n" QUEUE-ID ["\n" URL] "\n" RECIPIENT) "." base64url(MAC),
 * the MAC the first 16 bytes of HMAC-SHA256 over a label and the payload (a key used for
 * nothing else; the label keeps tokens of one kind from passing as another's).
 */
import crypto from 'node:crypto';
import { ErrorCodes } from '../errors.js';
import { readFleetKey } from '../bounces/return-path.js';

/** u: unsubscribe; o: the open pixel; c: a click, with the URL it leads to. */
export type LinkKind = 'u' | 'o' | 'c';

export interface LinkSubject {
  kind: LinkKind;
  /** The configured sender domain (senderDomains[].domain) the message was sent from. */
  senderDomain: string;
  queueId: string;
  recipient: string;
  /** A click's destination: the relay redirects only to a URL it signed. */
  url?: string;
}

const MAC_BYTES = 16;
/** Longer tokens are refused before any work: a click's URL is at most MAX_URL. */
const MAX_TOKEN = 4096;
/** The longest URL a click token carries (longer ones are left untracked). */
export const MAX_URL = 2048;
const TOKEN = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})$/;

const mac = (key: string, payload: Buffer) => crypto.createHmac('sha256', key).update('mailfleet link v1\n').update(payload).digest().subarray(0, MAC_BYTES);

export function linkToken(s: LinkSubject, key: string): string {
  const fields = s.kind === 'c' ? [s.kind, s.senderDomain.toLowerCase(), s.queueId, s.url ?? '', s.recipient] : [s.kind, s.senderDomain.toLowerCase(), s.queueId, s.recipient];
  const payload = Buffer.from(fields.join('\n'));
  return `${payload.toString('base64url')}.${mac(key, payload).toString('base64url')}`;
}

/** What a token is about; undefined for one the fleet's key did not sign (forged, altered, cut short). */
export function readLinkToken(token: string, key: string): LinkSubject | undefined {
  const m = token.length <= MAX_TOKEN ? TOKEN.exec(token) : null;
  if (!m) return undefined;
  const payload = Buffer.from(m[1]!, 'base64url');
  const given = Buffer.from(m[2]!, 'base64url');
  if (given.length !== MAC_BYTES || !crypto.timingSafeEqual(given, mac(key, payload))) return undefined;
  const [kind, senderDomain, queueId, ...rest] = payload.toString('utf8').split('\n');
  // A URL has no line break; a recipient might (a quoted local part): the URL comes first.
  const url = kind === 'c' ? rest.shift() : undefined;
  const recipient = rest.join('\n');
  if ((kind !== 'u' && kind !== 'o' && kind !== 'c') || !senderDomain || !queueId || !recipient || (kind === 'c' && !url)) return undefined;
  return { kind, senderDomain, queueId, recipient, ...(url ? { url } : {}) };
}

/** The fleet's link key (links.keyFile): MF_LINKS_KEY_UNREADABLE when it is missing or short. */
export const readLinksKey = (file: string) => readFleetKey(file, 'links.keyFile', ErrorCodes.LINKS_KEY_UNREADABLE, "mount the fleet's links key Secret, or fix links.keyFile");
