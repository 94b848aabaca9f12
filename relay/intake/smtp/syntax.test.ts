import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { describe, expect, it } from 'vitest';
import { formatReply, isHttpRequest, mailParamsRefusal, parseAddressCommand, verbOf } from './syntax.js';

/** smtp-server 3.21's own parser (the engine replaced it): the reference the engine must agree with. */
function reference(name: 'MAIL FROM' | 'RCPT TO', line: string): unknown {
  const self = { _server: { options: {}, logger: { error: () => undefined } }, session: {}, id: 'x' };
  const parse = (SMTPConnection.prototype as unknown as { _parseAddressCommand(this: unknown, n: string, c: Buffer): unknown })._parseAddressCommand;
  return parse.call(self, name.toLowerCase(), Buffer.from(line)) || undefined;
}

const LINES = [
  'MAIL FROM:<a@example.test>',
  'MAIL FROM:<>',
  'mail from: <A.B@Example.Test> SIZE=100 BODY=8BITMIME',
  'MAIL FROM:<a@example.test> SMTPUTF8',
  'MAIL FROM:<a@example.test> ENVID=ab+0D+0Acd',
  'MAIL FROM:<a@example.test> SIZE=1 SIZE=2',
  'MAIL FROM:<a@example.test> =x',
  'MAIL FROM:a@example.test',
  'MAIL FROM:<a@b@example.test>',
  'MAIL FROM:<.a@example.test>',
  'MAIL FROM:<a.@example.test>',
  'MAIL FROM:<a..b@example.test>',
  'MAIL FROM:<a@.example.test>',
  'MAIL FROM:<a@example..test>',
  'MAIL FROM:<a@-example.test>',
  'MAIL FROM:<a@exa-.test>',
  'MAIL FROM:<a@exa_mple.test>',
  'MAIL FROM:<a\u200b@example.test>',
  'MAIL FROM:<a@[192.0.2.1]>',
  'MAIL FROM:<a@[192.0.2.300]>',
  'MAIL FROM:<a@[IPv6:2001:db8::1]>',
  'MAIL FROM:<a@[IPv6:nonsense]>',
  'MAIL FROM:<a@[IPv6:2001:DB8:0:0:0:0:0:1]>',
  'MAIL FROM:<a@[IPv6:::ffff:192.0.2.1]>',
  'MAIL FROM:<a@[IPv6:0:0:0:0:0:FFFF:192.0.2.1]>',
  'MAIL FROM:<a@[IPv6:1:2:3:4:5:6:1.2.3.4]>',
  'MAIL FROM:<@relay.test,@other.test:a@example.test>',
  'MAIL FROM:<a@xn--mnchen-3ya.de>',
  'MAIL FROM:<jöran@bücher.example>',
  `MAIL FROM:<${'a'.repeat(64)}@${'b'.repeat(188)}.test>`,
  `MAIL FROM:<${'a'.repeat(64)}@${'b'.repeat(189)}.test>`,
  'MAIL FROM :<a@example.test>',
  'MAIL TO:<a@example.test>',
  'RCPT TO:<postmaster>',
  'RCPT TO:<Postmaster>',
  'RCPT TO:<a@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@example.test',
  'RCPT TO:<a@example.test',
  'RCPT TO:<>',
];

describe('parseAddressCommand', () => {
  it('reads every address and parameter as smtp-server did, and refuses what it refused', () => {
    for (const line of LINES) {
      const name = line.toUpperCase().startsWith('RCPT') ? 'RCPT TO' : 'MAIL FROM';
      expect(parseAddressCommand(name, line), line).toEqual(reference(name, line));
    }
  });

  it('refuses an IPv6 literal with a zone (it names an interface of the sender, and once made the parser throw)', () => {
    expect(parseAddressCommand('MAIL FROM', 'MAIL FROM:<a@[IPv6:fe80::1%eth0]>')).toBeUndefined();
  });

  it('gives the domain of an xn-- address as Unicode', () => {
    expect(parseAddressCommand('MAIL FROM', 'MAIL FROM:<a@xn--mnchen-3ya.de>')).toEqual({ address: 'a@münchen.de', args: false });
  });
});

describe('MAIL parameters', () => {
  it('refuses a SIZE over the limit with 552 5.3.4, a malformed SIZE, an unknown BODY and a valued SMTPUTF8', () => {
    expect(mailParamsRefusal({ SIZE: '101' }, 100)).toEqual([552, '5.3.4', 'Error: message exceeds fixed maximum message size 100']);
    expect(mailParamsRefusal({ SIZE: '100' }, 100)).toBeUndefined();
    expect(mailParamsRefusal({ SIZE: '1e3' }, 100)?.[0]).toBe(501);
    expect(mailParamsRefusal({ BODY: 'BINARYMIME' }, 0)?.[0]).toBe(501);
    expect(mailParamsRefusal({ SMTPUTF8: 'yes' }, 0)?.[0]).toBe(501);
    expect(mailParamsRefusal({ SIZE: true }, 0)).toEqual([501, undefined, 'Error: SIZE parameter requires a value']);
  });
});

describe('formatReply', () => {
  it('adds the enhanced status code the basic one implies, unless the text has its own or none is wanted', () => {
    expect(formatReply(250, 'Accepted', '2.1.0')).toBe('250 2.1.0 Accepted\r\n');
    expect(formatReply(501, 'Error: Bad sender address syntax')).toBe('501 5.5.4 Error: Bad sender address syntax\r\n');
    expect(formatReply(550, '5.7.1 Relaying denied')).toBe('550 5.7.1 Relaying denied\r\n');
    expect(formatReply(220, 'relay.test ESMTP mailfleet', false)).toBe('220 relay.test ESMTP mailfleet\r\n');
    expect(formatReply(354, 'End data with <CR><LF>.<CR><LF>')).toBe('354 End data with <CR><LF>.<CR><LF>\r\n');
    expect(formatReply(334, '')).toBe('334 \r\n');
  });

  it('writes a multi-line reply with a hyphen on all but the last line', () => {
    expect(formatReply(250, ['relay.test Nice to meet you', 'PIPELINING', 'SIZE 10'], false)).toBe('250-relay.test Nice to meet you\r\n250-PIPELINING\r\n250 SIZE 10\r\n');
  });

  it('turns control characters in a text (an application message built from client input) into spaces', () => {
    expect(formatReply(550, 'no such user a\r\n250 ok')).toBe('550 5.1.1 no such user a  250 ok\r\n');
  });
});

describe('commands', () => {
  it('reads the verb and spots an HTTP request', () => {
    expect(verbOf('mail FROM:<a@b>')).toBe('MAIL');
    expect(verbOf('')).toBe('');
    expect(isHttpRequest('GET / HTTP/1.1')).toBe(true);
    expect(isHttpRequest('POST /x HTTP/1.0')).toBe(true);
    expect(isHttpRequest('HELO GET')).toBe(false);
  });
});
