import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config.js';
import { headerFacts } from '../headers.js';
import { envelopeSenderRefusal, headerSenderRefusal, senderAllowed } from './sender-policy.js';

const config = (senderDomains: { domain: string; users?: string[] }[]) =>
  parseConfig({ hostname: 'r.test', spool: { dir: 'spool' }, senderDomains, listeners: [{ name: 'in', port: 0, tls: 'none', auth: 'none' }], delivery: { route: { type: 'file', dir: 'out' } } }, '/tmp', 'test');

const facts = (header: string) => headerFacts(Buffer.from(`${header}\r\n`));

describe('senderAllowed', () => {
  const c = config([{ domain: 'example.test' }, { domain: 'billing.test', users: ['billing'] }]);

  it('allows a configured domain and its subdomains, and a restricted domain only to its users', () => {
    expect(senderAllowed(c, 'app', 'a@example.test')).toBe(true);
    expect(senderAllowed(c, 'app', 'a@news.example.test')).toBe(true);
    expect(senderAllowed(c, 'app', 'a@badexample.test')).toBe(false);
    expect(senderAllowed(c, 'app', 'a@billing.test')).toBe(false);
    expect(senderAllowed(c, 'billing', 'a@billing.test')).toBe(true);
  });

  it('refuses what is not one mailbox, and allows any domain when none is configured', () => {
    expect(senderAllowed(c, 'app', 'a@example.test@evil.test')).toBe(false);
    expect(senderAllowed(c, 'app', '')).toBe(false);
    expect(senderAllowed(config([]), 'app', 'a@anywhere.test')).toBe(true);
  });
});

describe('envelopeSenderRefusal', () => {
  it("answers 550 5.7.1 naming the user and the domain, or the null sender's problem", () => {
    const c = config([{ domain: 'example.test' }]);
    expect(envelopeSenderRefusal(c, 'app', 'a@example.test')).toBeUndefined();
    expect(envelopeSenderRefusal(c, 'app', 'a@other.test')?.message).toBe('5.7.1 Sender <a@other.test> not allowed: user app may not send from other.test');
    expect(envelopeSenderRefusal(c, 'app', '')?.message).toBe('5.7.1 Sender <> not allowed: user app may not send from <>');
  });
});

describe('headerSenderRefusal', () => {
  const c = config([{ domain: 'example.test' }]);

  it('takes a message whose every originator field is an allowed sender', () => {
    expect(headerSenderRefusal(c, 'app', facts('From: App <a@example.test>\r\nSender: b@mail.example.test\r\n'))).toBeUndefined();
  });

  it('refuses the first field that names another sender: Sender and Resent-* as much as From', () => {
    expect(headerSenderRefusal(c, 'app', facts('From: a@other.test\r\n'))?.message).toBe('5.7.1 Header From <a@other.test> not allowed: user app may not send from other.test');
    expect(headerSenderRefusal(c, 'app', facts('From: a@example.test\r\nSender: s@other.test\r\n'))?.message).toMatch(/^5\.7\.1 Header Sender <s@other\.test> not allowed/);
    expect(headerSenderRefusal(c, 'app', facts('From: a@example.test\r\nResent-From: r@other.test\r\n'))?.message).toMatch(/^5\.7\.1 Header Resent-From <r@other\.test> not allowed/);
  });

  it('refuses a message without From, even when Sender is allowed', () => {
    const refused = headerSenderRefusal(c, 'app', facts('Sender: a@example.test\r\nSubject: x\r\n'));
    expect([refused?.responseCode, refused?.message]).toEqual([550, '5.7.1 Message has no From header']);
  });
});
