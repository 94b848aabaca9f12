import { describe, expect, it } from 'vitest';
import { classifyMx, isThrottling, providerTable } from './providers.js';

describe('providers', () => {
  it('groups domains by the names of their MX hosts', () => {
    const table = providerTable([]);
    expect(classifyMx(['gmail-smtp-in.l.google.com'], table)?.name).toBe('gmail');
    expect(classifyMx(['aspmx.l.google.com.'], table)?.name).toBe('gmail'); // a Workspace domain
    expect(classifyMx(['contoso-com.mail.protection.outlook.com'], table)?.name).toBe('microsoft');
    expect(classifyMx(['mta5.am0.yahoodns.net'], table)?.name).toBe('yahoo');
    expect(classifyMx(['mx01.mail.icloud.com'], table)?.name).toBe('apple');
    expect(classifyMx(['mx.example.test', 'notgoogle.com'], table)).toBeUndefined();
  });

  it('configured providers override built-in limits by name and add new ones', () => {
    const table = providerTable([
      { name: 'gmail', mxHosts: [], maxConnections: 2, throttleBackoff: 60, requireTls: true },
      { name: 'corp', mxHosts: ['mx.corp.test'], messagesPerHour: 100, throttleBackoff: 300, requireTls: false },
    ]);
    const gmail = table.find((p) => p.name === 'gmail')!;
    expect(gmail).toMatchObject({ maxConnections: 2, messagesPerMinute: 1200, throttleBackoff: 60, requireTls: true });
    expect(gmail.mxHosts).toContain('google.com');
    expect(classifyMx(['a.mx.corp.test'], table)?.name).toBe('corp');
  });

  it('tells a provider throttling the sender from a reply about one message', () => {
    expect(isThrottling('421 4.7.28 Gmail has detected an unusual rate of unsolicited mail', '4.7.28')).toBe(true);
    expect(isThrottling('421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume', '4.7.0')).toBe(true);
    expect(isThrottling('451 4.7.650 The mail server has been temporarily rate limited due to IP reputation', '4.7.650')).toBe(true);
    expect(isThrottling('454 Throttling failure: Maximum sending rate exceeded.', '4.0.0')).toBe(true);
    expect(isThrottling('421 4.7.0 Too many connections from your host', '4.7.0')).toBe(true);
    expect(isThrottling('451 4.7.1 greylisted, try again later', '4.7.1')).toBe(false);
    expect(isThrottling('452 4.5.3 Too many recipients', '4.5.3')).toBe(false);
    expect(isThrottling('550 5.7.1 rate limit exceeded', '5.7.1')).toBe(false);
  });
});
