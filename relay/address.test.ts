import { describe, expect, it } from 'vitest';
import { configuredDomainOf, parseMailbox } from './address.js';

describe('parseMailbox', () => {
  it('splits ordinary, quoted and address-literal mailboxes', () => {
    expect(parseMailbox('App.Mail+x@Mail.Example.TEST')).toEqual({ local: 'App.Mail+x', domain: 'mail.example.test' });
    expect(parseMailbox('"a@evil.test"@example.test')).toEqual({ local: '"a@evil.test"', domain: 'example.test' });
    expect(parseMailbox('"a\\"b"@example.test')?.domain).toBe('example.test');
    expect(parseMailbox('root@[192.0.2.1]')?.domain).toBe('[192.0.2.1]');
  });

  it('refuses anything with more than one unquoted @, or without a local part or a domain', () => {
    for (const bad of ['a@evil.test@example.test', '@example.test', 'a@', 'a', '', '"a"b@example.test', 'a@exa mple.test', 'a@-x.test', 'a..b@example.test', 'a\0b@example.test', 'a@example.test\r\n', '<a@example.test>']) {
      expect(parseMailbox(bad), bad).toBeUndefined();
    }
  });
});

describe('configuredDomainOf', () => {
  it('names the configured domain of an address or of its parent, the longest that matches, ignoring case', () => {
    const domains = ['example.com', 'mail.example.com', 'Other.test'];
    expect(configuredDomainOf('app@example.com', domains)).toBe('example.com');
    expect(configuredDomainOf('app@news.mail.example.com', domains)).toBe('mail.example.com');
    expect(configuredDomainOf('App@OTHER.test', domains)).toBe('other.test');
    expect(configuredDomainOf('app@notexample.com', domains)).toBeUndefined();
    expect(configuredDomainOf('', domains)).toBeUndefined();
  });
});
