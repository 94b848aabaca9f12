import { describe, expect, it } from 'vitest';
import { readLinkToken } from './token.js';
import { tokenInSubject, unsubscribeFields, unsubscribeOwners } from './unsubscribe.js';

const KEY = 'k'.repeat(40);
const owners = unsubscribeOwners([
  { domain: 'Example.com', returnPath: 'bounces.example.com', unsubscribe: { url: 'https://links.example.com/' } },
  { domain: 'quiet.org', unsubscribe: { url: 'https://links.quiet.org' } },
  { domain: 'plain.net' },
]);
const message = (over: Partial<Parameters<typeof unsubscribeFields>[0]> = {}) => ({ sender: 'news@mail.example.com', recipients: ['reader@example.org'], queueId: 'Q1', hasListUnsubscribe: false, ...over });

describe('unsubscribe fields', () => {
  it('name the link and, with a return path, the mailto; List-Unsubscribe-Post says one-click', () => {
    expect(owners).toEqual([
      { senderDomain: 'example.com', url: 'https://links.example.com', mailtoDomain: 'bounces.example.com' },
      { senderDomain: 'quiet.org', url: 'https://links.quiet.org' },
    ]);
    const decided = unsubscribeFields(message(), owners, KEY);
    if (!('add' in decided)) throw new Error(`skipped: ${decided.skip}`);
    const token = /\/u\/([^>]+)>/.exec(decided.add)![1]!;
    expect(decided.add).toBe(`List-Unsubscribe: <https://links.example.com/u/${token}>,\r\n <mailto:unsubscribe@bounces.example.com?subject=${token}>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n`);
    expect(readLinkToken(token, KEY)).toEqual({ kind: 'u', senderDomain: 'example.com', queueId: 'Q1', recipient: 'reader@example.org' });
    expect(unsubscribeFields(message({ sender: 'a@quiet.org' }), owners, KEY)).toMatchObject({ add: expect.not.stringContaining('mailto') });
  });

  it('are left out for a message with its own, one to several recipients, a domain without unsubscribe, the null sender, and without a key', () => {
    expect(unsubscribeFields(message({ hasListUnsubscribe: true }), owners, KEY)).toEqual({ skip: 'has_own' });
    expect(unsubscribeFields(message({ recipients: ['a@x.org', 'b@x.org'] }), owners, KEY)).toEqual({ skip: 'several_recipients' });
    expect(unsubscribeFields(message({ sender: 'a@plain.net' }), owners, KEY)).toEqual({ skip: 'not_configured' });
    expect(unsubscribeFields(message({ sender: 'a@notexample.com' }), owners, KEY)).toEqual({ skip: 'not_configured' });
    expect(unsubscribeFields(message({ sender: '' }), owners, KEY)).toEqual({ skip: 'not_configured' });
    expect(unsubscribeFields(message(), owners, undefined)).toEqual({ skip: 'not_configured' });
  });

  it('find the token in a subject as mail programs send it', () => {
    const token = 'dQpleGFtcGxlLmNvbQpRMQpy.AAAAAAAAAAAAAAAAAAAAAA';
    expect(tokenInSubject(token)).toBe(token);
    expect(tokenInSubject(`Re: ${token}`)).toBe(token);
    expect(tokenInSubject('unsubscribe me')).toBeUndefined();
  });
});
