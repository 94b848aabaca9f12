import { describe, expect, it } from 'vitest';
import { advertisedAuth, diagnose, SendCheck, type SessionFacts, type SmtpError } from './diagnose.js';

const facts: SessionFacts = {
  host: 'mail.example.com',
  port: 587,
  mode: 'starttls',
  timeoutSeconds: 20,
  from: 'app@example.com',
  user: undefined,
  oauth2: false,
  caGiven: false,
  greeted: true,
  capabilities: ['PIPELINING', 'SIZE 1000', 'STARTTLS'],
  tlsEstablished: true,
  authenticated: false,
};

function error(fields: Partial<SmtpError> & { message?: string }): SmtpError {
  return Object.assign(new Error(fields.message ?? 'failed'), fields);
}

/** What `mailfleet send` prints for failures the real-server tests in send.test.ts cannot stage. */
describe('diagnose', () => {
  it.each<[string, Partial<SmtpError>, Partial<SessionFacts>, string]>([
    ['an unresolvable host', { code: 'EDNS', originalCode: 'ENOTFOUND' }, {}, 'mail.example.com does not resolve (ENOTFOUND)'],
    ['a connect timeout', { code: 'ETIMEDOUT', timeoutType: 'CONNECT_TIMEOUT' }, { greeted: false }, 'a firewall (security group, NetworkPolicy) silently drops'],
    ['no route', { code: 'ESOCKET', originalCode: 'EHOSTUNREACH' }, {}, 'no network route to mail.example.com:587'],
    ['an implicit TLS handshake that stalls', { code: 'ETIMEDOUT', timeoutType: 'SOCKET_TIMEOUT' }, { mode: 'tls', tlsEstablished: false, greeted: false }, 'TLS handshake did not finish within 20s'],
    ['a STARTTLS handshake that stalls', { code: 'ETIMEDOUT', timeoutType: 'UPGRADE_TIMEOUT' }, { tlsEstablished: false }, 'handshake after STARTTLS did not finish'],
    ['a server that stops answering', { code: 'ETIMEDOUT', timeoutType: 'SOCKET_TIMEOUT' }, {}, 'stopped answering for 20s'],
    ['a certificate from another CA than --ca', { code: 'ESOCKET', originalCode: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, { caGiven: true, tlsEstablished: false }, 'not signed by the CA in --ca'],
    ['an expired certificate', { code: 'ESOCKET', originalCode: 'CERT_HAS_EXPIRED' }, { tlsEstablished: false }, 'outside its validity period'],
    ['STARTTLS advertised but refused', { code: 'ETLS', command: 'STARTTLS', response: '454 4.7.0 TLS not available', responseCode: 454 }, { tlsEstablished: false }, 'advertised STARTTLS but refused it'],
    ['AUTH only over TLS', { code: 'EAUTH', command: 'AUTH PLAIN', response: '538 5.7.11 Encryption required', responseCode: 538 }, { tlsEstablished: false }, 'only over an encrypted connection'],
    ['a mechanism the server advertises but refuses', { code: 'EAUTH', command: 'AUTH CRAM-MD5', response: '504 5.5.4 Unrecognized', responseCode: 504 }, {}, 'does not support the AUTH CRAM-MD5 mechanism'],
    ['no mechanism in common', { code: SendCheck.AUTH_NO_COMMON_METHOD }, { capabilities: ['AUTH XOAUTH2 SCRAM-SHA-256'] }, 'offers only AUTH XOAUTH2, SCRAM-SHA-256'],
    ['AUTH missing even over TLS', { code: SendCheck.AUTH_NOT_OFFERED }, {}, 'no AUTH on this port even over TLS'],
    ['AUTH hidden until TLS', { code: SendCheck.AUTH_NEEDS_TLS }, { tlsEstablished: false }, 'this one offers AUTH only after TLS'],
    ['relay denied to an authenticated user', { code: 'EENVELOPE', command: 'RCPT TO', response: '550 5.7.1 Relay access denied', responseCode: 550, rejected: ['x@other.test'] }, { user: 'app', authenticated: true }, 'will not relay to x@other.test even for "app"'],
    ['a 421 at the greeting', { code: 'EPROTOCOL', command: 'CONN', response: '421 4.7.0 Too many connections', responseCode: 421 }, { capabilities: undefined }, 'closing the session'],
    ['a 554 at the greeting', { code: 'EPROTOCOL', command: 'CONN', response: '554 5.7.1 Client host blocked', responseCode: 554 }, { capabilities: undefined }, 'refused the session as soon as it started'],
    ['a connection closed during the STARTTLS handshake', { code: 'ETLS', message: 'Connection closed unexpectedly' }, { tlsEstablished: false }, 'during the TLS handshake'],
    ['a connection closed before the greeting', { code: 'ECONNECTION' }, { greeted: false, tlsEstablished: false, capabilities: undefined }, 'closed the connection unexpectedly'],
    ['a connection reset mid-session', { code: 'ESOCKET', originalCode: 'ECONNRESET' }, {}, 'closed the connection unexpectedly'],
    ['a connection closed in the implicit TLS handshake', { code: 'ECONNECTION' }, { mode: 'tls', tlsEstablished: false }, 'does not speak implicit TLS (try --starttls)'],
    ['an unexpected reply mid-session', { code: 'EPROTOCOL', command: 'CONN', response: '554 5.3.0 Internal error', responseCode: 554 }, {}, 'refused the session with "554 5.3.0 Internal error"'],
    ['any other refusal', { code: 'EENVELOPE', command: 'RCPT TO', response: '550 5.1.1 No such user', responseCode: 550 }, {}, 'refused RCPT TO with "550 5.1.1 No such user"'],
    ['Microsoft 365 refusing a password (550 5.7.30)', { code: 'EAUTH', command: 'AUTH LOGIN', response: '550 5.7.30 Basic authentication is not supported for Client Submission.', responseCode: 550 }, { user: 'app' }, 'the SMTP step AUTH LOGIN failed: basic_auth_disabled'],
    ['SMTP AUTH turned off for the tenant', { code: 'EAUTH', command: 'AUTH XOAUTH2', response: '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.', responseCode: 535 }, { user: 'relay@contoso.com', oauth2: true }, 'the SMTP step AUTH XOAUTH2 failed: smtp_auth_disabled'],
    ['a server without XOAUTH2 for --oauth2', { code: SendCheck.AUTH_NO_COMMON_METHOD }, { oauth2: true, capabilities: ['AUTH PLAIN LOGIN'] }, 'offers only AUTH PLAIN, LOGIN, not XOAUTH2'],
    ['a token kept off a plain-text connection', { code: SendCheck.AUTH_NEEDS_TLS }, { oauth2: true, tlsEstablished: false }, 'so the access token was not sent in plain text'],
    ['anything else', { code: 'ESTREAM', message: 'stream broke' }, {}, 'unexpected way (stream broke)'],
  ])('explains %s', (_name, fields, overrides, expected) => {
    expect(diagnose(error(fields), { ...facts, ...overrides })).toContain(expected);
  });

  it('quotes only the last line of a multi-line reply', () => {
    const err = error({ code: 'EENVELOPE', command: 'MAIL FROM', response: '550-5.7.1 first\n550 5.7.1 Sender not allowed', responseCode: 550 });
    expect(diagnose(err, facts)).toContain('("550 5.7.1 Sender not allowed")');
  });
});

describe('advertisedAuth', () => {
  it('reads both the standard and the old AUTH= form', () => {
    expect(advertisedAuth(['PIPELINING', 'AUTH PLAIN LOGIN'])).toEqual(['PLAIN', 'LOGIN']);
    expect(advertisedAuth(['AUTH=login plain'])).toEqual(['LOGIN', 'PLAIN']);
    expect(advertisedAuth(['STARTTLS'])).toBeUndefined();
  });
});
