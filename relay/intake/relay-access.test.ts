import { describe, expect, it } from 'vitest';
import { mailFromAccessRefusal, recipientRefusal, tooManyRecipients, TrustedNetworks } from './relay-access.js';

describe('TrustedNetworks', () => {
  it('matches subnets and single addresses, IPv4-mapped IPv6 as its IPv4 address', () => {
    const t = new TrustedNetworks(['127.0.0.0/8', '10.1.2.3', 'fd00::/8']);
    expect(t.has('127.0.0.9')).toBe(true);
    expect(t.has('::ffff:127.0.0.9')).toBe(true);
    expect(t.has('10.1.2.3')).toBe(true);
    expect(t.has('10.1.2.4')).toBe(false);
    expect(t.has('fd12::1')).toBe(true);
    expect(t.has('2001:db8::1')).toBe(false);
    // Asked again (remembered), the same answer.
    expect(t.has('10.1.2.4')).toBe(false);
  });
});

describe('mailFromAccessRefusal', () => {
  it('asks a stranger on an AUTH-required listener to log in; lets a user, a trusted client, or any client elsewhere on', () => {
    expect(mailFromAccessRefusal(false, () => false, 'required')?.message).toBe('5.7.0 Authentication required: log in with AUTH before sending');
    expect(mailFromAccessRefusal(true, () => false, 'required')).toBeUndefined();
    expect(mailFromAccessRefusal(false, () => true, 'required')).toBeUndefined();
    expect(mailFromAccessRefusal(false, () => false, 'optional')).toBeUndefined();
  });
});

describe('recipientRefusal', () => {
  it('never relays for a client that neither logged in nor is trusted', () => {
    const refused = recipientRefusal('b@dest.test', false);
    expect([refused?.responseCode, refused?.message]).toEqual([554, '5.7.1 <b@dest.test>: Relay access denied (authenticate first)']);
    expect(recipientRefusal('b@dest.test', true)).toBeUndefined();
  });

  it('refuses what is not user@domain.tld, and addresses that pick their own next hop', () => {
    for (const rcpt of ['nobody', 'b@localhost', '@dest.test']) expect(recipientRefusal(rcpt, true)?.message).toBe(`5.1.3 <${rcpt}>: Recipient address must be user@domain`);
    for (const rcpt of ['b%other.test@dest.test', 'other!b@dest.test', '@hop.test:b@dest.test', '"b@other.test"@dest.test']) {
      expect(recipientRefusal(rcpt, true)?.message).toBe(`5.1.3 <${rcpt}>: Source-routed, percent-hack and UUCP addresses are not accepted`);
    }
  });
});

describe('tooManyRecipients', () => {
  it('refuses one past the limit, but not an address given again (it replaces its earlier entry), whatever its case', () => {
    const three = [{ address: 'a@dest.test' }, { address: 'b@dest.test' }, { address: 'c@dest.test' }];
    expect(tooManyRecipients(three.slice(0, 2), 'c@dest.test', 3)).toBe(false);
    expect(tooManyRecipients(three, 'd@dest.test', 3)).toBe(true);
    expect(tooManyRecipients(three, 'B@DEST.test', 3)).toBe(false);
  });
});
