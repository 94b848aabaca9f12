import { describe, expect, it } from 'vitest';
import { LineTooLong, SmtpReader } from './reader.js';

/** Feeds `wire` in the given pieces after DATA; returns the body handed out, whether it ended, and the line after it. */
function readBody(pieces: string[]): { body: string; ended: boolean; after: string | undefined } {
  const r = new SmtpReader(1000);
  r.startData();
  let body = '';
  let ended = false;
  for (const p of pieces) {
    r.push(Buffer.from(p, 'latin1'));
    if (ended) continue;
    const part = r.nextBody();
    if (part.chunk) body += part.chunk.toString('latin1');
    ended = part.end;
  }
  return { body, ended, after: ended ? r.nextLine() : undefined };
}

/** Every way to cut `wire` in three pieces. */
function* cuts(wire: string): Generator<string[]> {
  for (let i = 0; i <= wire.length; i++) for (let j = i; j <= wire.length; j++) yield [wire.slice(0, i), wire.slice(i, j), wire.slice(j)];
}

describe('SmtpReader', () => {
  it('reads command lines ending in CR LF or a bare LF, and keeps a partial one', () => {
    const r = new SmtpReader(100);
    r.push(Buffer.from('EHLO a\r\nMAIL FROM:<>\nRCPT'));
    expect([r.nextLine(), r.nextLine(), r.nextLine()]).toEqual(['EHLO a', 'MAIL FROM:<>', undefined]);
    r.push(Buffer.from(' TO:<b@c>\r\n'));
    expect(r.nextLine()).toBe('RCPT TO:<b@c>');
  });

  it('refuses a command line over the limit, complete or not', () => {
    const r = new SmtpReader(10);
    r.push(Buffer.from('x'.repeat(11)));
    expect(() => r.nextLine()).toThrow(LineTooLong);
    r.push(Buffer.from(`${'y'.repeat(11)}\r\nNOOP\r\n`));
    expect(() => r.nextLine()).toThrow(LineTooLong);
    expect(r.nextLine()).toBe('NOOP');
  });

  it('removes dot-stuffing and finds the end wherever the reads cut the wire, with the pipelined command after it', () => {
    const wire = 'a\r\n..b\r\n.\r\nQUIT\r\n';
    for (const pieces of cuts(wire)) expect(readBody(pieces), JSON.stringify(pieces)).toEqual({ body: 'a\r\n.b\r\n', ended: true, after: 'QUIT' });
  });

  it('ends an empty body at once, and a body whose first line is stuffed', () => {
    for (const pieces of cuts('.\r\nNOOP\r\n')) expect(readBody(pieces)).toEqual({ body: '', ended: true, after: 'NOOP' });
    for (const pieces of cuts('..\r\n.\r\n')) expect(readBody(pieces)).toEqual({ body: '.\r\n', ended: true, after: undefined });
  });

  it('takes only CR LF . CR LF for the end: a bare LF before or after the dot is content (no SMTP smuggling)', () => {
    for (const wire of ['a\n.\r\nMAIL FROM:<x@y>\r\n', 'a\r\n.\nMAIL FROM:<x@y>\r\n', 'a\r.\r\n']) {
      for (const pieces of cuts(wire)) {
        expect(readBody(pieces), JSON.stringify(pieces)).toEqual({ body: wire, ended: false, after: undefined });
      }
    }
  });

  it('removes a stuffed dot after a bare LF too, as smtp-server did, without ending there', () => {
    for (const pieces of cuts('a\n..b\r\n.\r\n')) expect(readBody(pieces)).toEqual({ body: 'a\n.b\r\n', ended: true, after: undefined });
  });

  it('reads a command line sent a byte at a time', () => {
    const r = new SmtpReader(100);
    const got: (string | undefined)[] = [];
    for (const byte of Buffer.from('NOOP\r\nQUIT\r\n')) {
      r.push(Buffer.from([byte]));
      got.push(r.nextLine());
    }
    expect(got.filter((l) => l !== undefined)).toEqual(['NOOP', 'QUIT']);
  });

  it('keeps a line that starts with one dot and more text as it is', () => {
    expect(readBody(['a\r\n.b\r\n.\r\n'])).toEqual({ body: 'a\r\n.b\r\n', ended: true, after: undefined });
  });

  it('hands out a large body as it comes, holding back only what may be the end', () => {
    const r = new SmtpReader(10);
    r.startData();
    r.push(Buffer.from(`${'x'.repeat(5000)}\r\n.`));
    const part = r.nextBody();
    expect(part).toMatchObject({ end: false });
    expect(part.chunk!.length).toBe(5002);
    expect(r.buffered).toBe(1);
  });

  it('drops what is buffered on discard (plaintext behind STARTTLS)', () => {
    const r = new SmtpReader(100);
    r.push(Buffer.from('STARTTLS\r\nMAIL FROM:<a@b>\r\n'));
    expect(r.nextLine()).toBe('STARTTLS');
    r.discard();
    expect(r.nextLine()).toBeUndefined();
  });
});
