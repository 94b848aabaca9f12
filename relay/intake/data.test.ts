import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { TraceInfo } from '../headers.js';
import type { SpoolWriter } from '../spool/spool.js';
import { headerSplit, receiveBody } from './data.js';

const trace = (): TraceInfo => ({ heloName: 'client.test', clientAddress: '192.0.2.1', byHostname: 'relay.test', protocol: 'ESMTP', queueId: 'Q1', date: new Date(0) });

/** A writer that keeps what it is given in memory. */
function memoryWriter() {
  const chunks: Buffer[] = [];
  const writer = { id: 'Q1', write: (b: Buffer) => void chunks.push(b) } as unknown as SpoolWriter;
  return { writer, text: () => Buffer.concat(chunks).toString() };
}

function send(parts: (string | Buffer)[], maxHeaderSize = 100) {
  const stream = new PassThrough();
  const { writer, text } = memoryWriter();
  const received = receiveBody(stream, writer, maxHeaderSize, trace);
  for (const p of parts) stream.write(p);
  stream.end();
  return { received, text };
}

describe('headerSplit', () => {
  it('finds the end of the header, waits for more while unseen, and refuses past the limit', () => {
    expect(headerSplit(Buffer.from('From: a@b.test\r\n\r\nbody'), 100)).toBe(18);
    expect(headerSplit(Buffer.from('From: a@b.test\r\n'), 100)).toBe('more');
    expect(headerSplit(Buffer.from(`X: ${'x'.repeat(200)}`), 100)).toBe('tooLarge');
    expect(headerSplit(Buffer.from(`X: ${'x'.repeat(200)}\r\n\r\n`), 100)).toBe('tooLarge');
  });
});

describe('receiveBody', () => {
  it('completes a header that arrives over several chunks with the trace, Message-ID and Date, and keeps the rest as sent', async () => {
    const { received, text } = send(['From: a@b', '.test\r\nSubject: hi\r', '\n\r\nbody\r\n', 'more\r\n']);
    const header = await received;
    expect(header.messageId).toBe('<Q1@relay.test>');
    expect(text()).toMatch(/^Received: from client\.test \(\[192\.0\.2\.1\]\)\r\n\tby relay\.test \(mailfleet\) with ESMTP id Q1;\r\n\t[^\r]+\r\nMessage-ID: <Q1@relay\.test>\r\nDate: [^\r]+\r\nFrom: a@b\.test\r\nSubject: hi\r\n\r\nbody\r\nmore\r\n$/);
    expect(header.length).toBe(text().indexOf('\r\n\r\n') + 4);
  });

  it('completes a message that is all header', async () => {
    const { received, text } = send(['From: a@b.test\r\nMessage-ID: <m@x>\r\n']);
    expect((await received).messageId).toBe('<m@x>');
    expect(text()).toMatch(/\r\nDate: [^\r]+\r\nFrom: a@b\.test\r\nMessage-ID: <m@x>\r\n$/);
  });

  it('refuses a NUL byte, in the header or the body', async () => {
    await expect(send(['From: a@b.test\r\n\r\nbo', Buffer.from([0x64, 0, 0x79])]).received).rejects.toThrow('5.6.0 Message contains NUL characters');
    await expect(send([Buffer.from('From: a\0@b.test\r\n\r\n')]).received).rejects.toThrow('5.6.0 Message contains NUL characters');
  });

  it('refuses a header over the limit, never cut short, and writes none of it', async () => {
    const { received, text } = send(['From: a@b.test\r\n', `X-Pad: ${'p'.repeat(150)}\r\n`, '\r\nbody\r\n']);
    await expect(received).rejects.toThrow('5.3.4 Message header too large: the limit is 100 bytes');
    expect(text()).toBe('');
  });
});
