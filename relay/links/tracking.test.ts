import { describe, expect, it } from 'vitest';
import { classifyClient } from './clients.js';
import { readLinkToken } from './token.js';
import { trackingOwners, trackingPlan } from './tracking.js';

const KEY = 'k'.repeat(40);
const owners = trackingOwners([
  { domain: 'example.com', tracking: { url: 'https://t.example.com/', opens: true, clicks: true, excludeDomains: ['Bank.test'] }, unsubscribe: { url: 'https://links.example.com' } },
  { domain: 'quiet.org', tracking: { url: 'https://t.quiet.org', opens: false, clicks: true, excludeDomains: [] } },
  { domain: 'off.net', tracking: { url: 'https://t.off.net', opens: false, clicks: false, excludeDomains: [] } },
]);
const m = (over: object = {}) => ({ sender: 'news@mail.example.com', recipients: ['reader@example.org'], queueId: 'Q1', ...over });

describe('tracking plan', () => {
  it('signs a click token with the URL and an open token, under the tracking host', () => {
    const plan = trackingPlan(m(), owners, KEY)!;
    const click = plan.link('https://shop.test/a?b=1')!;
    expect(click.startsWith('https://t.example.com/c/')).toBe(true);
    expect(readLinkToken(click.slice('https://t.example.com/c/'.length), KEY)).toEqual({ kind: 'c', senderDomain: 'example.com', queueId: 'Q1', recipient: 'reader@example.org', url: 'https://shop.test/a?b=1' });
    expect(readLinkToken(plan.pixel!.slice('https://t.example.com/o/'.length), KEY)).toEqual({ kind: 'o', senderDomain: 'example.com', queueId: 'Q1', recipient: 'reader@example.org' });
  });

  it('leaves other schemes, excluded domains, its own links, long and broken URLs', () => {
    const plan = trackingPlan(m(), owners, KEY)!;
    for (const url of ['mailto:a@b.test', 'tel:+123', 'javascript:alert(1)', 'https://www.bank.test/login', 'https://links.example.com/u/X.Y', 'https://t.example.com/c/X.Y', `https://shop.test/${'a'.repeat(2048)}`, 'https://exa mple.test/', 'http://[bad']) expect(plan.link(url), url).toBeUndefined();
  });

  it('tracks only one-recipient mail of a domain with tracking, not notices; opens and clicks each as configured', () => {
    expect(trackingPlan(m({ recipients: ['a@x.test', 'b@x.test'] }), owners, KEY)).toBeUndefined();
    expect(trackingPlan(m({ notice: true }), owners, KEY)).toBeUndefined();
    expect(trackingPlan(m({ sender: '' }), owners, KEY)).toBeUndefined();
    expect(trackingPlan(m({ sender: 'a@other.test' }), owners, KEY)).toBeUndefined();
    expect(trackingPlan(m(), owners, undefined)).toBeUndefined();
    expect(trackingPlan(m({ sender: 'a@off.net' }), owners, KEY)).toBeUndefined();
    const quiet = trackingPlan(m({ sender: 'a@quiet.org' }), owners, KEY)!;
    expect(quiet.pixel).toBeUndefined();
    expect(quiet.link('https://shop.test/')).toMatch(/^https:\/\/t\.quiet\.org\/c\//);
  });
});

describe('who fetched a tracking link', () => {
  it('tells proxies, scanners and people apart by method and User-Agent', () => {
    expect(classifyClient('GET', 'Mozilla/5.0')).toEqual({ userAgent: 'Mozilla/5.0', proxy: 'apple' });
    expect(classifyClient('GET', 'Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)')).toMatchObject({ proxy: 'google' });
    expect(classifyClient('GET', 'YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html')).toMatchObject({ proxy: 'yahoo' });
    for (const ua of ['curl/8.5.0', 'python-requests/2.31', 'Mozilla/5.0 (compatible; Barracuda Sentinel)', 'Mozilla/5.0 HeadlessChrome/120', 'Microsoft Office Protocol Discovery']) expect(classifyClient('GET', ua), ua).toMatchObject({ scanner: true });
    expect(classifyClient('GET', undefined)).toEqual({ scanner: true });
    expect(classifyClient('HEAD', 'Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0')).toMatchObject({ scanner: true });
    expect(classifyClient('GET', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148')).toEqual({ userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148' });
  });
});
