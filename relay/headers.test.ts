import { describe, expect, it } from 'vitest';
import { fromAddresses, headerEnd, headerFacts } from './headers.js';

const facts = (text: string) => headerFacts(Buffer.from(text));

describe('headerFacts', () => {
  it('reads From, Message-ID and Date whatever their case, and nothing else', () => {
    const f = facts('Subject: hi\r\nFROM: Ann <ann@example.test>\r\nmessage-id: <1@x>\r\nDATE: Sat, 28 Nov 2026 21:22:55 +0000\r\n\r\n');
    expect(f).toEqual({ length: 103, from: ['Ann <ann@example.test>'], otherOriginators: [], messageId: '<1@x>', hasDate: true });
    expect(fromAddresses(f)).toEqual(['ann@example.test']);
  });

  it('unfolds a From field folded over lines, and finds groups and several From fields', () => {
    const f = facts('From: "Ann"\r\n\t<ann@example.test>,\r\n  bob@example.test\r\nX-A: 1\r\nFrom: team: carl@example.test, dora@example.test;\r\n\r\n');
    expect(f.from).toEqual(['"Ann" <ann@example.test>, bob@example.test', 'team: carl@example.test, dora@example.test;']);
    expect(fromAddresses(f)).toEqual(['ann@example.test', 'bob@example.test', 'carl@example.test', 'dora@example.test']);
    expect(f.messageId).toBeUndefined();
    expect(f.hasDate).toBe(false);
  });

  it('takes bare LF line ends, ignores lines without a colon, and keeps the first Message-ID', () => {
    const f = facts('garbage line\nMessage-ID: <a@x>\nMessage-ID: <b@x>\nX-From: not@this.test\n\n');
    expect(f.messageId).toBe('<a@x>');
    expect(f.from).toEqual([]);
  });

  it('does not mistake a folded line containing "From:" for a From field', () => {
    const f = facts('Subject: re\r\n From: evil@example.test\r\nFrom: ann@example.test\r\n\r\n');
    expect(fromAddresses(f)).toEqual(['ann@example.test']);
  });
  it('reads a header of many lines without a colon in linear time', () => {
    // 2 MiB of 'x' lines: a scan that searched for the colon from every line takes ~10 s here.
    const header = Buffer.from(`${'x\r\n'.repeat(700_000)}From: ann@example.test\r\n\r\n`);
    const started = performance.now();
    const f = headerFacts(header);
    expect(fromAddresses(f)).toEqual(['ann@example.test']);
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('headerEnd', () => {
  it('finds CRLF CRLF or LF LF, whichever comes first, and -1 before either', () => {
    expect(headerEnd(Buffer.from('A: 1\r\n\r\nbody'))).toBe(8);
    expect(headerEnd(Buffer.from('A: 1\n\nbody'))).toBe(6);
    expect(headerEnd(Buffer.from('A: 1\r\nB: 2\r\n'))).toBe(-1);
  });
});
