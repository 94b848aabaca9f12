/**
 * What a client sent, cut into what the engine acts on (pure; no sockets): command lines,
 * then, after DATA, the message body without its dot-stuffing, up to the line with a single
 * dot. Bytes after that end (pipelined commands) stay for the next line.
 *
 * Only CR LF . CR LF ends the body, as smtp-server read it: with a bare LF or a bare CR on
 * either side the dot is content, so the relay never reads an end of data where a server
 * behind it would read none (SMTP smuggling). A command line may end in a bare LF.
 */

export class LineTooLong extends Error {
  constructor() {
    super('Command line too long');
  }
}

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;
const EMPTY = Buffer.alloc(0);

/** A piece of body (dot-stuffing removed) and whether the body ended with it. */
export interface BodyPart {
  chunk: Buffer | undefined;
  end: boolean;
}

export class SmtpReader {
  /** Received and not handed out yet: joined (`take`) only when a line or the body is read from it. */
  private pending: Buffer = EMPTY;
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  /** A queued chunk holds a line end: worth joining for a command line. */
  private queuedLf = false;
  /** Pending is known to hold no line end (it was searched). */
  private pendingHasNoLf = true;
  private inData = false;
  /** In DATA: the next byte starts a line (after an LF) / that line end was a CR LF. */
  private lineStart = false;
  private afterCrlf = false;
  /** In DATA: the last byte handed out was a CR (a CR LF split across reads). */
  private lastWasCr = false;

  constructor(private readonly maxLineLength: number) {}

  push(chunk: Buffer): void {
    this.queued.push(chunk);
    this.queuedBytes += chunk.length;
    if (!this.queuedLf && chunk.includes(LF)) this.queuedLf = true;
  }

  /** Bytes received and not yet handed out. */
  get buffered(): number {
    return this.pending.length + this.queuedBytes;
  }

  get readingData(): boolean {
    return this.inData;
  }

  /** Drops what is buffered (plaintext sent behind STARTTLS must never be read inside TLS). */
  discard(): void {
    this.pending = EMPTY;
    this.queued = [];
    this.queuedBytes = 0;
    this.queuedLf = false;
    this.pendingHasNoLf = true;
  }

  /** Joins what was queued to what is pending (once per read, so a client sending a byte at a time costs no more than one sending lines). */
  private take(): Buffer {
    if (this.queued.length) {
      this.pending = this.pending.length || this.queued.length > 1 ? Buffer.concat([this.pending, ...this.queued]) : this.queued[0]!;
      this.queued = [];
      this.queuedBytes = 0;
      if (this.queuedLf) this.pendingHasNoLf = false;
      this.queuedLf = false;
    }
    return this.pending;
  }

  /** The next command line without its line end (UTF-8), undefined until one is complete. Throws LineTooLong. */
  nextLine(): string | undefined {
    // No line end among the new bytes: nothing to join yet (unless the line is already too long).
    if (this.pendingHasNoLf && !this.queuedLf && this.buffered <= this.maxLineLength) return undefined;
    const pending = this.take();
    const lf = pending.indexOf(LF);
    this.pendingHasNoLf = lf < 0;
    if (lf < 0) {
      if (pending.length > this.maxLineLength) {
        this.pending = EMPTY;
        throw new LineTooLong();
      }
      return undefined;
    }
    const end = lf > 0 && pending[lf - 1] === CR ? lf - 1 : lf;
    this.pending = pending.subarray(lf + 1);
    if (end > this.maxLineLength) throw new LineTooLong();
    return pending.toString('utf8', 0, end);
  }

  /** The body follows (the DATA line's CR LF was the line end before its first line). */
  startData(): void {
    this.inData = true;
    this.lineStart = true;
    this.afterCrlf = true;
    this.lastWasCr = false;
  }

  /**
   * The body received so far, dot-stuffing removed, and whether its end was seen. A line
   * start that cannot be judged yet (a dot that may be the end) stays buffered. A stuffed dot
   * is removed after a bare LF too (as smtp-server did), but only CR LF . CR LF ends the body.
   */
  nextBody(): BodyPart {
    const buf = this.take();
    const parts: Buffer[] = [];
    let from = 0;
    let i = 0;
    for (;;) {
      if (this.lineStart) {
        if (i >= buf.length) break;
        if (buf[i] === DOT) {
          if (i + 2 >= buf.length) break; // ".", ".\r", "..": not yet known
          if (this.afterCrlf && buf[i + 1] === CR && buf[i + 2] === LF) {
            if (i > from) parts.push(buf.subarray(from, i));
            this.pending = buf.subarray(i + 3);
            this.pendingHasNoLf = false;
            this.inData = false;
            return { chunk: join(parts), end: true };
          }
          if (buf[i + 1] === DOT) {
            // A stuffed dot: the line starts with the second one.
            if (i > from) parts.push(buf.subarray(from, i));
            from = i + 1;
          }
        }
        this.lineStart = false;
      }
      const lf = buf.indexOf(LF, i);
      if (lf < 0) {
        i = buf.length;
        break;
      }
      this.lineStart = true;
      this.afterCrlf = lf > 0 ? buf[lf - 1] === CR : this.lastWasCr;
      i = lf + 1;
    }
    if (i > from) parts.push(buf.subarray(from, i));
    if (i > 0) this.lastWasCr = buf[i - 1] === CR;
    this.pending = buf.subarray(i);
    return { chunk: join(parts), end: false };
  }
}

function join(parts: Buffer[]): Buffer | undefined {
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}
