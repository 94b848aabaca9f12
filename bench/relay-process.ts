/**
 * A relay process for the benchmarks: loopback listener without AUTH, durable spool in a temp
 * directory, smarthost route to the given sink, its log (default level) in a file there.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { freePort, waitForPort } from '../test/peers/ports.js';
import { imageEntrypoint, imageEnv, imageNodeFlags } from '../test/support/dockerfile.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

export interface BenchRelay {
  port: number;
  pid: number;
  /** The process's peak resident set so far (VmHWM). */
  peakRssBytes: () => number;
  stop: () => Promise<void>;
}

/**
 * `node`: the Node binary to run it on (default: this one); `logLevel`: default info, the
 * relay's own default; `root`: the checkout whose build runs (another one: a baseline to
 * compare with in the same sitting); `extra`: more config sections (a webhook, say).
 */
export async function startBenchRelay(sinkPort: number, node = process.execPath, logLevel = 'info', root = ROOT, extra: Record<string, unknown> = {}): Promise<BenchRelay> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-bench-'));
  const port = await freePort();
  const config = {
    hostname: 'relay.bench.test',
    spool: { dir: path.join(dir, 'spool'), minFreeBytes: 0 },
    listeners: [{ name: 'in', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
    delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sinkPort, tls: 'none' } },
    http: { address: '127.0.0.1', port: await freePort() },
    // Its default level, one line per event, into a file: as Postfix logs to its maillog.
    log: { level: logLevel },
    ...extra,
  };
  fs.writeFileSync(path.join(dir, 'relay.yaml'), JSON.stringify(config));
  const logFd = fs.openSync(path.join(dir, 'relay.log'), 'a');
  // With the image's Node flags and environment (that checkout's own): what is measured is what ships.
  const child = spawn(node, [...imageNodeFlags(imageEntrypoint(root)), path.join(root, 'dist/cli/main.js'), 'relay', '--config', path.join(dir, 'relay.yaml')], {
    stdio: ['ignore', logFd, 'inherit'],
    env: { ...process.env, ...imageEnv(root) },
  });
  fs.closeSync(logFd); // the child has its own copy
  await waitForPort(port, { what: 'mailfleet relay' });
  return {
    port,
    pid: child.pid!,
    peakRssBytes: () => Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) * 1024,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
