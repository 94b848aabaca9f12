import { describe, expect, it } from 'vitest';
import { reportOutcome } from './inbound.js';
import { readReport } from './report.js';

const dsn = (status: string, action = 'failed') =>
  Buffer.from(
    [
      'From: MAILER-DAEMON@mx.dest.test',
      'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
      '',
      '--b',
      'Content-Type: text/plain',
      '',
      'Sorry.',
      '--b',
      'Content-Type: message/delivery-status',
      '',
      'Reporting-MTA: dns; mx.dest.test',
      '',
      'Final-Recipient: rfc822; gone@dest.test',
      `Action: ${action}`,
      `Status: ${status}`,
      'Remote-MTA: dns; inner.dest.test',
      'Diagnostic-Code: smtp; 550 5.1.1 <gone@dest.test>:',
      '  no such user',
      '',
      '--b',
      'Content-Type: text/rfc822-headers',
      '',
      'Message-ID: <m@example.test>',
      'Return-Path: <b+q1-aaaaaaaaaa@bounces.example.test>',
      '',
      '--b--',
      '',
    ].join('\r\n'),
  );

const subject = { queueId: 'Q1', senderDomain: 'example.test', messageId: '<m@example.test>' };
const ctx = { relay: 'relay-0', now: 0 };

describe('reports to the return path', () => {
  it('a DSN: each failed recipient, its status and diagnostic (folded lines joined), the quoted original', async () => {
    const report = await readReport(dsn('5.1.1'));
    expect(report).toEqual({
      kind: 'dsn',
      reportingMta: 'mx.dest.test',
      recipients: [{ recipient: 'gone@dest.test', action: 'failed', status: '5.1.1', diagnostic: '550 5.1.1 <gone@dest.test>: no such user', remoteMta: 'inner.dest.test' }],
      original: { messageId: '<m@example.test>', returnPath: 'b+q1-aaaaaaaaaa@bounces.example.test', to: undefined },
    });
    const { events, suppressions } = reportOutcome(report, subject, ctx);
    expect(events.map((e) => [e.type, e.bounce?.category])).toEqual([['bounced', 'invalid_recipient']]);
    expect(suppressions).toMatchObject([{ senderDomain: 'example.test', recipient: 'gone@dest.test', statusCode: '5.1.1' }]);
  });

  it('a soft bounce is an event but no suppression; a delay is a deferred event', async () => {
    expect(reportOutcome(await readReport(dsn('5.2.2')), subject, ctx)).toMatchObject({ events: [{ type: 'bounced', bounce: { category: 'mailbox_full' } }], suppressions: [] });
    expect(reportOutcome(await readReport(dsn('4.4.1', 'delayed')), subject, ctx)).toMatchObject({ events: [{ type: 'deferred' }], suppressions: [] });
  });

  it('anything else (an auto-reply, garbage) is other, with why', async () => {
    expect(await readReport(Buffer.from('Subject: Out of office\r\n\r\nAway.\r\n'))).toMatchObject({ kind: 'other', why: expect.stringContaining('Out of office') });
    expect(await readReport(Buffer.from('Content-Type: multipart/report; boundary="x"\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n--x--\r\n'))).toMatchObject({ kind: 'other', why: 'a delivery status notification without a recipient' });
  });
});
