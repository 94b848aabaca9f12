/**
 * What a client sent, cut into what the engine acts on (pure; no sockets): command lines,
 * then, after DATA, the message body without its dot-stuffing, up to the line with a single
 * dot. Bytes after that end (pipelined commands) stay for the next line.
 *
 * Only CR LF ends a line of the body and only CR LF . CR LF ends the body, as smtp-server
 * read it: a bare LF followed by a dot is message content, so the relay never reads an end
 * of data where a server behind it would read none (SMTP smuggling). A command line may end
 * in a bare LF.
 */

export class LineTooLong extends Error {
  constructor() {
    super('Command line too long');
  }
}

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;

/** A piece of body (dot-stuffing removed) and whether the body ended with it. */
export interface BodyPart {
  chunk: Buffer | undefined;
  end: boolean;
}

export class SmtpReader {
  private pending: Buffer = Buffer.alloc(0);
  private inData = false;
  /** In DATA: the next byte starts a line (the previous two were CR LF). */
  private lineStart = false;
  /** In DATA: the last byte handed out was a CR (a CR LF split across reads). */
  private lastWasCr = false;

  constructor(private readonly maxLineLength: number) {}

  push(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
  }

  /** Bytes received and not yet handed out. */
  get buffered(): number {
    return this.pending.length;
  }

  get readingData(): boolean {
    return this.inData;
  }

  /** Drops what is buffered (plaintext sent behind STARTTLS must never be read inside TLS). */
  discard(): void {
    this.pending = Buffer.alloc(0);
  }

  /** The next command line without its line end (UTF-8), undefined until one is complete. Throws LineTooLong. */
  nextLine(): string | undefined {
    const lf = this.pending.indexOf(LF);
    if (lf < 0) {
      if (this.pending.length > this.maxLineLength) {
        this.pending = Buffer.alloc(0);
        throw new LineTooLong();
      }
      return undefined;
    }
    const end = lf > 0 && this.pending[lf - 1] === CR ? lf - 1 : lf;
    if (end > this.maxLineLength) {
      this.pending = this.pending.subarray(lf + 1);
      throw new LineTooLong();
    }
    const line = this.pending.toString('utf8', 0, end);
    this.pending = this.pending.subarray(lf + 1);
    return line;
  }

  /** The body follows (the DATA line's CR LF was the line end before its first line). */
  startData(): void {
    this.inData = true;
    this.lineStart = true;
    this.lastWasCr = false;
  }

  /**
   * The body received so far, dot-stuffing removed, and whether its end was seen. A line
   * start that cannot be judged yet (a dot that may be the end) stays buffered.
   */
  nextBody(): BodyPart {
    const buf = this.pending;
    const parts: Buffer[] = [];
    let from = 0;
    let i = 0;
    for (;;) {
      if (this.lineStart) {
        if (i >= buf.length) break;
        if (buf[i] === DOT) {
          if (i + 2 >= buf.length) break; // ".", ".\r": not yet known
          if (buf[i + 1] === CR && buf[i + 2] === LF) {
            if (i > from) parts.push(buf.subarray(from, i));
            this.pending = buf.subarray(i + 3);
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
      this.lineStart = lf > 0 ? buf[lf - 1] === CR : this.lastWasCr;
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
