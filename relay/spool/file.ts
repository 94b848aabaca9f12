/**
 * A message's files in q/: the message file's format and its state file. A message file is the
 * body, then the envelope as JSON, then a 29-byte trailer ('MFQ1', body length in 16 hex digits,
 * envelope length in 8, a newline) so that it is written in one sequential pass and a file whose
 * trailer does not check out was never acknowledged (it was written in tmp/ and renamed only
 * once fsynced: see relay/spool/writer.ts). `<id>.state` holds per-recipient progress and retry
 * timing over the envelope, replaced atomically and not fsynced: losing it can only repeat a
 * delivery.
 */
import fsp from 'node:fs/promises';
import type { Envelope } from '../envelope.js';

const TRAILER_MAGIC = 'MFQ1';
const TRAILER_LENGTH = 4 + 16 + 8 + 1; // magic, body length, envelope length (hex), newline

/** A message file that fails validation (set aside in corrupt/ at recovery). */
export class SpoolFileInvalid extends Error {}

/** What follows the body in a message file: the envelope and the trailer. */
export function queueFileTail(envelope: Envelope, bodyLength: number): Buffer[] {
  const json = Buffer.from(JSON.stringify(envelope));
  const trailer = Buffer.from(`${TRAILER_MAGIC}${bodyLength.toString(16).padStart(16, '0')}${json.length.toString(16).padStart(8, '0')}\n`);
  return [json, trailer];
}

/** The lengths a trailer gives, or why the file is not a message file (pure). */
export function parseTrailer(trailer: Buffer, size: number): { bodyLength: number; jsonLength: number } {
  if (size < TRAILER_LENGTH) throw new SpoolFileInvalid('too short');
  const text = trailer.toString('latin1');
  if (!text.startsWith(TRAILER_MAGIC)) throw new SpoolFileInvalid('no trailer');
  const bodyLength = parseInt(text.slice(4, 20), 16);
  const jsonLength = parseInt(text.slice(20, 28), 16);
  if (bodyLength + jsonLength + TRAILER_LENGTH !== size) throw new SpoolFileInvalid('bad lengths');
  return { bodyLength, jsonLength };
}

/** Reads a message file's envelope (not its body); SpoolFileInvalid when it does not check out. */
export async function readQueueFile(file: string): Promise<{ envelope: Envelope; bodyLength: number }> {
  const handle = await fsp.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const trailer = Buffer.alloc(TRAILER_LENGTH);
    if (size >= TRAILER_LENGTH) await handle.read(trailer, 0, TRAILER_LENGTH, size - TRAILER_LENGTH);
    const { bodyLength, jsonLength } = parseTrailer(trailer, size);
    const json = Buffer.alloc(jsonLength);
    await handle.read(json, 0, jsonLength, bodyLength);
    try {
      return { envelope: JSON.parse(json.toString('utf8')) as Envelope, bodyLength };
    } catch {
      throw new SpoolFileInvalid('envelope is not JSON');
    }
  } finally {
    await handle.close();
  }
}

/** A state file's fields, or null when it is missing or unreadable (the envelope's own then count). */
export async function readState(file: string): Promise<Partial<Envelope> | null> {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8')) as Partial<Envelope>;
  } catch {
    return null;
  }
}

/** Replaces a state file atomically (no fsync: see the file comment). */
export async function writeState(file: string, envelope: Envelope): Promise<void> {
  const { recipients, attempts, nextAttemptAt, delayNoticeSent, dkimSignature } = envelope;
  await fsp.writeFile(`${file}.tmp`, JSON.stringify({ recipients, attempts, nextAttemptAt, delayNoticeSent, dkimSignature }));
  await fsp.rename(`${file}.tmp`, file);
}
