/**
 * DATA's bytes into the spool writer: refused at the first NUL, and for a header section over
 * limits.maxHeaderSize (refused, never cut short: the sender policy must read it whole); the
 * header is completed with our trace fields (Received, and Message-ID and Date when missing)
 * before the first byte is written.
 */
import type { Readable } from 'node:stream';
import type { Session } from './smtp/session.js';
import { takeAppFields } from '../events/app-fields.js';
import { addedHeaders, headerEnd, headerFacts, type HeaderFacts, type TraceInfo } from '../headers.js';
import { refusal } from '../refusals.js';
import type { SpoolWriter } from '../spool/spool.js';
import { plainAddress } from './session.js';

/** What the header held, with the Message-ID the message goes out with and the length of the completed header. */
export type ReceivedHeader = HeaderFacts & { messageId: string; tags?: string[]; metadata?: Record<string, string> };

/**
 * Where the header section ends in the bytes held so far (pure): 'more' while its end is
 * unseen, 'tooLarge' once it ends, or would end, past the limit. Bytes held stay under the
 * limit plus one chunk.
 */
export function headerSplit(head: Buffer, maxHeaderSize: number): number | 'more' | 'tooLarge' {
  const end = headerEnd(head);
  if (end > maxHeaderSize || (end < 0 && head.length > maxHeaderSize)) return 'tooLarge';
  return end < 0 ? 'more' : end;
}

/** The trace fields of a session's Received header (pure). */
export function traceInfo(session: Session, queueId: string, byHostname: string, date: Date): TraceInfo {
  const rcpts = session.envelope.rcptTo;
  const tlsInfo = session.tlsOptions || undefined;
  return {
    heloName: session.hostNameAppearsAs || '',
    clientAddress: plainAddress(session.remoteAddress),
    clientHostname: session.clientHostname,
    byHostname,
    protocol: session.transmissionType || 'ESMTP',
    queueId,
    recipient: rcpts.length === 1 ? rcpts[0]!.address : undefined,
    tls: session.secure && tlsInfo?.version ? `using ${tlsInfo.version} with cipher ${tlsInfo.name ?? 'unknown'}` : undefined,
    date,
  };
}

/**
 * Reads the DATA stream into the writer, the header completed with the trace that `trace`
 * gives when the header has been read (and the fields `more` adds: List-Unsubscribe). Takes chunks from 'data' events (async iteration costs
 * a promise per chunk, on every message); the stream pauses only while a large body is
 * written out to its file. Rejects with an SmtpRefusal (NUL, header too large) or the
 * stream's or writer's error, once no write is under way (the caller then removes what was
 * written).
 */
export function receiveBody(stream: Readable, writer: SpoolWriter, maxHeaderSize: number, trace: () => TraceInfo, more?: (facts: HeaderFacts) => string): Promise<ReceivedHeader> {
  let head: Buffer | undefined = Buffer.alloc(0);
  let facts: ReceivedHeader | undefined;
  const complete = (given: Buffer, rest: Buffer) => {
    let header = given;
    const found: Omit<ReceivedHeader, 'messageId'> & { messageId?: string } = headerFacts(header);
    if (found.hasAppFields) {
      const taken = takeAppFields(header);
      if (!taken.ok) throw refusal('appFieldInvalid', { problem: taken.problem });
      header = taken.fields.header;
      Object.assign(found, { length: header.length, tags: taken.fields.tags, metadata: taken.fields.metadata });
    }
    const added = addedHeaders(found, trace());
    const addedBuf = Buffer.from(more ? added.text + more(found) : added.text);
    // The facts are this message's own: completed in place (a spread costs ~1 µs on Node 20's V8).
    facts = Object.assign(found, { messageId: added.messageId, length: found.length + addedBuf.length });
    return writer.write(Buffer.concat([addedBuf, header, rest]));
  };
  const take = (chunk: Buffer): Promise<void> | undefined => {
    // RFC 5322 2.3 and RFC 5321 4.1.1.4: no NUL in a message; programs that read it as a C string see another message.
    if (chunk.indexOf(0) >= 0) throw refusal('nul');
    if (!head) return writer.write(chunk);
    head = head.length ? Buffer.concat([head, chunk]) : chunk;
    const end = headerSplit(head, maxHeaderSize);
    if (end === 'tooLarge') {
      head = undefined;
      throw refusal('headerTooLarge', { limit: maxHeaderSize });
    }
    if (end === 'more') return undefined;
    const whole = head;
    head = undefined;
    return complete(whole.subarray(0, end), whole.subarray(end));
  };
  return new Promise((resolve, reject) => {
    let writing: Promise<void> | undefined;
    let failed = false;
    const failWith = (err: unknown) => {
      if (failed) return;
      failed = true;
      // Read the rest so the session can go on to the reply; answer once no write is under way.
      stream.resume();
      void (writing ?? Promise.resolve()).catch(() => undefined).then(() => reject(err));
    };
    stream.on('data', (chunk: Buffer) => {
      if (failed) return;
      try {
        const pending = writing ? writing.then(() => take(chunk)) : take(chunk);
        if (!pending) return;
        stream.pause();
        const current: Promise<void> = pending.then(() => {
          if (writing === current) writing = undefined;
          if (!failed) stream.resume();
        });
        writing = current;
        current.catch(failWith);
      } catch (err) {
        failWith(err);
      }
    });
    stream.once('error', failWith);
    stream.once('end', () => {
      void (writing ?? Promise.resolve())
        .then(() => (head && !failed ? complete(head, Buffer.alloc(0)) : undefined))
        .then(() => (failed ? undefined : resolve(facts!)), failWith);
    });
  });
}
