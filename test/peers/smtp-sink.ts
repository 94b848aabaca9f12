import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { binary } from './availability.js';
import { freePort, waitForPort } from './ports.js';
import { forgetOnProcessExit, onProcessExit, run, spawnPeer } from './proc.js';
import { isRoot, uidOf } from './users.js';
import { waitUntil } from './wait.js';

export const SMTP_SINK_BINARIES = ['/usr/sbin/smtp-sink', '/usr/sbin/smtp-source'];

export interface SmtpSinkOptions {
  port?: number;
  /** listen(2) backlog (default 256). */
  backlog?: number;
  /** Keep one dump file per message here (created and given to postfix when root). */
  dumpDir?: string;
  /** Dump into a temp dir of our own, removed on stop. */
  dump?: boolean;
  /** More smtp-sink options, e.g. ['-Q', 'RCPT'] or ['-w', '2']. */
  extraArgs?: string[];
}

export interface SmtpSink {
  port: number;
  pid: number;
  dumpDir: string | undefined;
  /** Messages received so far (smtp-sink's own -c counter, which counts at the final "."). */
  count(): number;
  waitForCount(n: number, timeoutMs?: number): Promise<void>;
  /**
   * Dump files in arrival order. smtp-sink's format, not the wire bytes: its own X-Client-*,
   * X-Mail-Args, X-Rcpt-Args and Received headers first, LF line ends, dot-stuffing removed,
   * and one empty line appended (see parseSinkDump).
   */
  messages(): Buffer[];
  stop(): Promise<void>;
}

/** Splits a dump file into the envelope and the message (still with LF line ends). */
export function parseSinkDump(dump: Buffer): { mailFrom: string; rcptTo: string[]; message: Buffer } {
  const text = dump.toString('latin1');
  const received = text.indexOf('\nReceived: ');
  const head = text.slice(0, received + 1);
  // The Received header smtp-sink adds has exactly three lines.
  let end = received + 1;
  for (let i = 0; i < 3; i++) end = text.indexOf('\n', end) + 1;
  const args = (name: string): string[] => [...head.matchAll(new RegExp(`^${name}: <?([^>\\n]*)>?`, 'gm'))].map((m) => m[1] ?? '');
  const body = dump.subarray(end, dump.length - 1); // drop the appended empty line
  return { mailFrom: args('X-Mail-Args')[0] ?? '', rcptTo: args('X-Rcpt-Args'), message: body };
}

/**
 * smtp-sink -c's counter, read incrementally: it prints `sess=N quit=N mesg=N` and a "\r"
 * after every change (the line rewritten in place on a terminal). Each call takes only the
 * output printed since the last one; a line cut between two reads waits for its end.
 */
export class SinkCounter {
  private partial = '';
  private last = 0;

  /** Takes the newly printed output; returns the latest message count. */
  feed(fresh: string): number {
    if (!fresh) return this.last;
    const text = this.partial + fresh;
    const end = Math.max(text.lastIndexOf('\r'), text.lastIndexOf('\n'));
    if (end < 0) {
      this.partial = text;
      return this.last;
    }
    this.partial = text.slice(end + 1);
    const at = text.lastIndexOf('mesg=', end);
    if (at >= 0) this.last = parseInt(text.slice(at + 5, end), 10);
    return this.last;
  }
}

/** Postfix's smtp-sink on 127.0.0.1, counting (-c) and optionally dumping (-d) messages. */
export async function startSmtpSink(opts: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const port = opts.port ?? (await freePort());
  let dumpDir = opts.dumpDir;
  const ownDumpDir = !dumpDir && opts.dump === true;
  if (ownDumpDir) {
    const dir = mkdtempSync(path.join(tmpdir(), 'mailfleet-sink-'));
    chmodSync(dir, 0o755);
    onProcessExit(dir, () => rmSync(dir, { recursive: true, force: true }));
    dumpDir = dir;
  }
  const args = ['-c'];
  if (isRoot()) args.push('-u', 'postfix'); // smtp-sink refuses to run as root
  if (dumpDir) {
    mkdirSync(dumpDir, { recursive: true });
    if (isRoot()) chownSync(dumpDir, uidOf('postfix'), 0);
    args.push('-d', `${dumpDir}/%Y%m%d%H%M%S.`);
  }
  args.push(...(opts.extraArgs ?? []), `127.0.0.1:${port}`, String(opts.backlog ?? 256));
  const peer = spawnPeer(binary('/usr/sbin/smtp-sink'), args);
  // Only what smtp-sink printed since the last poll is read (benchmarks poll often, over long runs).
  const counter = new SinkCounter();
  let fresh: string[] = [];
  peer.child.stdout?.on('data', (chunk: Buffer) => fresh.push(chunk.toString('latin1')));
  const count = (): number => {
    const text = fresh.join('');
    fresh = [];
    return counter.feed(text);
  };
  try {
    await waitForPort(port, { alive: peer.running, what: 'smtp-sink' });
  } catch (err) {
    await peer.stop();
    throw new Error(`${(err as Error).message}\n${peer.output()}`);
  }

  return {
    port,
    pid: peer.pid,
    dumpDir,
    count,
    waitForCount: (n, timeoutMs = 15_000) => waitUntil(() => count() >= n, { timeoutMs, what: `${n} message(s) at smtp-sink (have ${count()})` }),
    messages() {
      if (!dumpDir) throw new Error('smtp-sink was started without dumpDir or dump: true');
      const dir = dumpDir;
      return readdirSync(dir)
        .map((name) => ({ name, mtime: statSync(path.join(dir, name), { bigint: true }).mtimeNs }))
        .sort((a, b) => (a.mtime === b.mtime ? a.name.localeCompare(b.name) : a.mtime < b.mtime ? -1 : 1))
        .map((f) => readFileSync(path.join(dir, f.name)));
    },
    async stop() {
      await peer.stop();
      if (ownDumpDir && dumpDir) {
        rmSync(dumpDir, { recursive: true, force: true });
        forgetOnProcessExit(dumpDir);
      }
    },
  };
}

export interface SmtpSourceOptions {
  host?: string;
  port: number;
  /** Parallel sessions (-s). */
  sessions?: number;
  /** Messages in total (-m). */
  count?: number;
  /** Message size in bytes (-l). */
  bytes?: number;
  from?: string;
  to?: string;
  /** Several messages per connection (-d) instead of one connection per message. */
  reuse?: boolean;
  extraArgs?: string[];
  timeoutMs?: number;
}

/** Runs Postfix's smtp-source load generator to completion. */
export async function runSmtpSource(opts: SmtpSourceOptions): Promise<{ code: number; durationMs: number; stdout: string; stderr: string }> {
  const args = [
    '-s', String(opts.sessions ?? 1),
    '-m', String(opts.count ?? 1),
    '-l', String(opts.bytes ?? 1000),
    '-f', opts.from ?? 'source@peer.test',
    '-t', opts.to ?? 'sink@peer.test',
    ...(opts.reuse ? ['-d'] : []),
    ...(opts.extraArgs ?? []),
    `${opts.host ?? '127.0.0.1'}:${opts.port}`,
  ];
  return run(binary('/usr/sbin/smtp-source'), args, { timeoutMs: opts.timeoutMs ?? 120_000 });
}
