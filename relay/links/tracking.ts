/**
 * Open and click tracking: which messages are rewritten (relay/links/rewrite.ts) and with
 * which links (pure). Like a List-Unsubscribe link, a tracking link names one recipient, so
 * only mail to one recipient is tracked; the relay's own notices never are. A link is left as
 * it is when it is not http(s), too long, to an excluded domain, or one of the relay's own
 * (the unsubscribe link, a link already tracked).
 */
import type { RewritePlan } from './rewrite.js';
import { linkToken, MAX_URL } from './token.js';
import { UNSUBSCRIBE_PATH } from './unsubscribe.js';

export const OPEN_PATH = '/o/';
export const CLICK_PATH = '/c/';

export interface TrackingOwner {
  senderDomain: string;
  url: string;
  opens: boolean;
  clicks: boolean;
  excludeDomains: string[];
  /** URLs that are the relay's own: never tracked. */
  own: string[];
}

export function trackingOwners(senderDomains: readonly { domain: string; tracking?: { url: string; opens: boolean; clicks: boolean; excludeDomains: string[] }; unsubscribe?: { url: string } }[]): TrackingOwner[] {
  return senderDomains.flatMap((d) => {
    if (!d.tracking || (!d.tracking.opens && !d.tracking.clicks)) return [];
    const url = d.tracking.url.replace(/\/+$/, '');
    const own = [`${url}/`, ...(d.unsubscribe ? [`${d.unsubscribe.url.replace(/\/+$/, '')}${UNSUBSCRIBE_PATH}`] : [])];
    return [{ senderDomain: d.domain.toLowerCase(), url, opens: d.tracking.opens, clicks: d.tracking.clicks, excludeDomains: d.tracking.excludeDomains.map((e) => e.toLowerCase()), own }];
  });
}

function trackable(url: string, owner: TrackingOwner): boolean {
  if (url.length > MAX_URL || /\s/.test(url) || owner.own.some((p) => url.startsWith(p))) return false;
  let host: string;
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return false;
    host = u.hostname.toLowerCase();
  } catch {
    return false;
  }
  return !owner.excludeDomains.some((d) => host === d || host.endsWith(`.${d}`));
}

/** How to rewrite a message, or undefined when it is not tracked. */
export function trackingPlan(m: { sender: string; recipients: readonly string[]; queueId: string; notice?: boolean }, owners: readonly TrackingOwner[], key: string | undefined): RewritePlan | undefined {
  if (!key || !m.sender || m.notice || m.recipients.length !== 1) return undefined;
  const domain = m.sender.slice(m.sender.lastIndexOf('@') + 1).toLowerCase();
  const owner = owners.find((o) => domain === o.senderDomain || domain.endsWith(`.${o.senderDomain}`));
  if (!owner) return undefined;
  const subject = { senderDomain: owner.senderDomain, queueId: m.queueId, recipient: m.recipients[0]! };
  return {
    link: (url) => (owner.clicks && trackable(url, owner) ? `${owner.url}${CLICK_PATH}${linkToken({ ...subject, kind: 'c', url }, key)}` : undefined),
    ...(owner.opens ? { pixel: `${owner.url}${OPEN_PATH}${linkToken({ ...subject, kind: 'o' }, key)}` } : {}),
  };
}
