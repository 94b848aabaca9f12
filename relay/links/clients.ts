/**
 * Who fetched a tracking link (pure): a person's mail program or browser, a mailbox provider's
 * proxy, or a security scanner. Opens and clicks by proxies and scanners are recorded, flagged,
 * and left out of the open and click rates: Apple Mail Privacy Protection loads every pixel
 * when mail arrives, Gmail and Yahoo fetch images through their proxies (once, then cached),
 * and security gateways follow every link before a person sees it.
 *
 * From the request alone (no IP lists, which change): the User-Agent, and HEAD (browsers GET).
 */
export interface TrackingClient {
  userAgent?: string;
  /** A mailbox provider's image proxy: `apple` (Mail Privacy Protection), `google` (Gmail), `yahoo`. */
  proxy?: 'apple' | 'google' | 'yahoo';
  /** An automated fetch: a security scanner, a link checker, a script. */
  scanner?: boolean;
}

const PROXIES: [RegExp, NonNullable<TrackingClient['proxy']>][] = [
  [/GoogleImageProxy/, 'google'],
  [/YahooMailProxy/, 'yahoo'],
  // Apple's proxy sends the bare product token and nothing else.
  [/^Mozilla\/5\.0$/, 'apple'],
];
const SCANNERS = /bot\b|crawler|spider|scanner|preview|barracuda|mimecast|proofpoint|urldefense|safelinks|microsoft office protocol|ms-office|python-requests|python-urllib|curl\/|wget\/|go-http-client|java\/|okhttp|headlesschrome|phantomjs|libwww|httpclient|node-fetch|undici|axios/i;

export function classifyClient(method: string, userAgent: string | undefined): TrackingClient {
  const ua = userAgent?.trim().slice(0, 300) || undefined;
  const proxy = ua ? PROXIES.find(([re]) => re.test(ua))?.[1] : undefined;
  if (proxy) return { userAgent: ua, proxy };
  if (method === 'HEAD' || !ua || SCANNERS.test(ua)) return { ...(ua ? { userAgent: ua } : {}), scanner: true };
  return { userAgent: ua };
}

/** Whether an open or click counts in the rates: a person's, not a proxy's or a scanner's. */
export const byPerson = (c: TrackingClient) => !c.proxy && !c.scanner;
