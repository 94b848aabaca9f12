import { describe, expect, it } from 'vitest';
import { envelopeSenderFor, readReturnPath, returnPathAddress } from './return-path.js';

const key = 'k'.repeat(40);
const owners = [{ senderDomain: 'example.test', returnPath: 'bounces.example.test' }];

describe('VERP return paths', () => {
  it('name the message, and only a relay with the key can make one', () => {
    const address = returnPathAddress('MXC7CR3X76EA7000007', 'bounces.example.test', key);
    expect(address).toMatch(/^b\+mxc7cr3x76ea7000007-[a-z2-7]{10}@bounces\.example\.test$/);
    expect(readReturnPath(address, owners, key)).toEqual({ queueId: 'MXC7CR3X76EA7000007', senderDomain: 'example.test' });
    // A server that changes the case of the local part changes nothing.
    expect(readReturnPath(address.toUpperCase(), owners, key)).toEqual({ queueId: 'MXC7CR3X76EA7000007', senderDomain: 'example.test' });
    expect(readReturnPath(address, owners, 'x'.repeat(40))).toBeUndefined();
    expect(readReturnPath(address.replace('mxc7cr3x76ea7000007', 'mxc7cr3x76ea7000008'), owners, key)).toBeUndefined();
    expect(readReturnPath(address.replace('bounces.example.test', 'bounces.other.test'), [...owners, { senderDomain: 'other.test', returnPath: 'bounces.other.test' }], key)).toBeUndefined();
  });

  it('replace the envelope sender of a sender domain (and its subdomains) that has one; never the null sender', () => {
    expect(envelopeSenderFor('app@example.test', 'Q1', owners, key)).toMatch(/^b\+q1-[a-z2-7]{10}@bounces\.example\.test$/);
    expect(envelopeSenderFor('app@news.example.test', 'Q1', owners, key)).toMatch(/@bounces\.example\.test$/);
    expect(envelopeSenderFor('app@elsewhere.test', 'Q1', owners, key)).toBe('app@elsewhere.test');
    expect(envelopeSenderFor('', 'Q1', owners, key)).toBe('');
    expect(envelopeSenderFor('app@example.test', 'Q1', owners, undefined)).toBe('app@example.test');
  });
});
