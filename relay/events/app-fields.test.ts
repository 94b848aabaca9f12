import { describe, expect, it } from 'vitest';
import { takeAppFields } from './app-fields.js';

const header = (fields: string) => Buffer.from(`${fields}\r\n`, 'latin1');

describe("the application's X-Mailfleet fields", () => {
  it('are taken out with their folded lines; every other byte stays, 8-bit ones too', () => {
    const given = header('Subject: caf\xe9\r\nX-Mailfleet-Tags: a, b,\r\n c\r\nFrom: x@example.test\r\nx-mailfleet-metadata:  {"k": "v", "n": 1, "b": true}\r\nTo: y@dest.test\r\n');
    const r = takeAppFields(given);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.fields.header.equals(header('Subject: caf\xe9\r\nFrom: x@example.test\r\nTo: y@dest.test\r\n'))).toBe(true);
    expect(r.fields.tags).toEqual(['a', 'b', 'c']);
    expect(r.fields.metadata).toEqual({ k: 'v', n: '1', b: 'true' });
  });

  it('leaves a header without them alone', () => {
    const given = header('Subject: hi\r\nX-Mailfleet-Other: kept\r\n');
    const r = takeAppFields(given);
    expect(r.ok && r.fields.header.equals(given) && r.fields.tags === undefined && r.fields.metadata === undefined).toBe(true);
  });

  it.each([
    ['eleven tags', `X-Mailfleet-Tags: ${Array.from({ length: 11 }, (_, i) => `t${i}`).join(',')}\r\n`, /has 11 tags; at most 10/],
    ['metadata that is not JSON', 'X-Mailfleet-Metadata: campaign=winter\r\n', /it is not JSON/],
    ['metadata that is a list', 'X-Mailfleet-Metadata: ["a"]\r\n', /must be one JSON object/],
    ['a nested value', 'X-Mailfleet-Metadata: {"a": {"b": 1}}\r\n', /the value of a is not/],
    ['a bad key', 'X-Mailfleet-Metadata: {"a b": "c"}\r\n', /the key "a b" is not/],
    ['two metadata fields', 'X-Mailfleet-Metadata: {}\r\nX-Mailfleet-Metadata: {}\r\n', /appears 2 times/],
  ])('refuses %s, saying what is wrong', (_, fields, problem) => {
    const r = takeAppFields(header(`Subject: x\r\n${fields}`));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(problem);
  });
});
