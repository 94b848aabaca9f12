/**
 * `mailfleet hash-password`: a users-file line (`NAME:$scrypt$...`) from a password. At a
 * terminal it asks twice without echo, as passwd and htpasswd do; from a pipe it reads stdin as
 * it is (one trailing newline dropped), for scripts and `docker run -i`.
 *
 * A terminal is read through process.stdin in raw mode, never with a synchronous read of fd 0:
 * Node makes a TTY's fd non-blocking once process.stdin exists, and such a read fails with
 * EAGAIN before anyone has typed.
 */
import fs from 'node:fs';
import tty from 'node:tty';
import { parseArgs } from 'node:util';
import { hashPassword } from '../relay/users.js';

export const HASH_PASSWORD_USAGE = `usage: mailfleet hash-password [--user NAME]
       echo -n PASSWORD | mailfleet hash-password [--user NAME]

Prints a scrypt hash of the password, or "NAME:hash", a line for the users file. At a
terminal it asks for the password twice and does not show it; otherwise it reads stdin.
Exit status: 0 printed, 2 no password, the two entries differ, or bad arguments; 130 Ctrl-C.`;

/** Thrown when the person at the terminal gives up (Ctrl-C). */
class Interrupted extends Error {}

/**
 * Reads lines typed at a terminal without showing them: raw mode (no echo, no line editing by
 * the terminal), so Backspace, Enter, Ctrl-C and Ctrl-D are handled here. Text typed or pasted
 * ahead (two lines at once) is kept for the next question.
 */
class HiddenLineReader {
  private pending = '';
  private waiting: (() => void) | undefined;
  private ended = false;
  private readonly onData = (chunk: Buffer) => {
    this.pending += chunk.toString('utf8');
    this.waiting?.();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.waiting?.();
  };

  constructor(
    private readonly input: tty.ReadStream,
    private readonly output: NodeJS.WritableStream,
  ) {
    input.setRawMode(true);
    input.on('data', this.onData);
    input.on('end', this.onEnd);
    input.resume();
  }

  /** The next line, or undefined at Ctrl-D on an empty line (end of input). */
  async question(prompt: string): Promise<string | undefined> {
    this.output.write(prompt);
    let line = '';
    for (;;) {
      while (this.pending.length) {
        const ch = this.pending[0]!;
        this.pending = this.pending.slice(1);
        if (ch === '\r' || ch === '\n') {
          // A terminal sends CR for Enter; a CR LF pair counts once.
          if (ch === '\r' && this.pending[0] === '\n') this.pending = this.pending.slice(1);
          this.output.write('\n');
          return line;
        }
        if (ch === '\u0003') {
          this.output.write('\n');
          throw new Interrupted();
        }
        if (ch === '\u0004') {
          if (!line) {
            this.output.write('\n');
            return undefined;
          }
          continue;
        }
        if (ch === '\u007f' || ch === '\b') line = [...line].slice(0, -1).join('');
        else if (ch === '\u0015') line = ''; // Ctrl-U: start again
        else if (ch >= ' ') line += ch;
      }
      if (this.ended) return line || undefined;
      await new Promise<void>((resolve) => (this.waiting = resolve));
      this.waiting = undefined;
    }
  }

  close(): void {
    this.input.off('data', this.onData);
    this.input.off('end', this.onEnd);
    this.input.setRawMode(false);
    this.input.pause();
  }
}

async function passwordFromTerminal(): Promise<{ password?: string; problem?: string }> {
  const reader = new HiddenLineReader(process.stdin as tty.ReadStream, process.stderr);
  // Whatever happens, the terminal gets its echo back.
  const restore = () => reader.close();
  process.once('exit', restore);
  try {
    const password = await reader.question('password: ');
    if (!password) return { problem: 'no password given' };
    const again = await reader.question('again: ');
    if (again !== password) return { problem: 'the two passwords differ: nothing printed' };
    return { password };
  } finally {
    process.off('exit', restore);
    restore();
  }
}

/** Runs `mailfleet hash-password` with the arguments after it; resolves to the exit code. */
export async function hashPasswordCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { user: { type: 'string', short: 'u' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(HASH_PASSWORD_USAGE);
    return 0;
  }
  let password: string;
  // tty.isatty, not process.stdin.isTTY: asking process.stdin makes fd 0 non-blocking, and the
  // synchronous read of a pipe below must not meet that.
  if (tty.isatty(0)) {
    let read;
    try {
      read = await passwordFromTerminal();
    } catch (err) {
      if (err instanceof Interrupted) return 130;
      throw err;
    }
    if (!read.password) {
      console.error(`hash-password: ${read.problem}`);
      return 2;
    }
    password = read.password;
  } else {
    password = fs.readFileSync(0, 'utf8').replace(/\r?\n$/, '');
    if (!password) {
      console.error('hash-password: no password on stdin');
      return 2;
    }
  }
  const hash = await hashPassword(password);
  console.log(values.user ? `${values.user}:${hash}` : hash);
  return 0;
}
