/**
 * `npm run bench:engines`: what an SMTP engine costs on the bench's load (smtp-source, 2,000
 * messages of 2,000 bytes, 20 sessions, a new connection per message), CPU milliseconds per
 * message of the server process, each with nothing behind it: the relay's own engine
 * (bench/engine-alone.ts, relay/intake/smtp/), smtp-server (bench/smtp-server-alone.ts, the
 * library it replaced) and the floor (bench/smtp-floor.ts: fixed replies, no parsing, the least
 * any Node server pays). All run with the image's Node flags, in turns, in one sitting
 * (BENCH_RUNS rounds, 8; medians leave out the first two). Writes bench/results/smtp-engines.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitForPort } from '../test/peers/ports.js';
import { runSmtpSource } from '../test/peers/smtp-sink.js';
import { imageEnv, imageNodeFlags } from '../test/support/dockerfile.js';
import { median } from './stats.js';

const MESSAGES = 2000;
const RUNS = Math.max(3, Number(process.env.BENCH_RUNS ?? 8));
const ROOT = path.resolve(import.meta.dirname, '../..');
const TICK_MS = 1000 / 100; // USER_HZ

interface Engine {
  name: string;
  script: string;
  child?: ChildProcess;
  port?: number;
  cpuMs: number[];
  msgPerSecond: number[];
}

/** CPU milliseconds a process has used so far (all its threads). */
function processCpu(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
}

async function main(): Promise<void> {
  const engines: Engine[] = [
    { name: 'relay engine alone', script: path.join(ROOT, 'dist/bench/engine-alone.js'), cpuMs: [], msgPerSecond: [] },
    { name: 'smtp-server alone', script: path.join(ROOT, 'dist/bench/smtp-server-alone.js'), cpuMs: [], msgPerSecond: [] },
    { name: 'floor (fixed replies)', script: path.join(ROOT, 'dist/bench/smtp-floor.js'), cpuMs: [], msgPerSecond: [] },
  ];
  try {
    for (const e of engines) {
      e.port = await freePort();
      e.child = spawn(process.execPath, [...imageNodeFlags(), e.script, String(e.port)], { stdio: 'inherit', env: { ...process.env, ...imageEnv() } });
      await waitForPort(e.port, { what: e.name });
    }
    for (let i = 0; i < RUNS; i++) {
      for (const e of i % 2 ? [...engines].reverse() : engines) {
        const cpu0 = processCpu(e.child!.pid!);
        const started = performance.now();
        const src = await runSmtpSource({ port: e.port!, sessions: 20, count: MESSAGES, bytes: 2000, reuse: false, from: 'bench@example.test', to: 'sink@dest.test' });
        if (src.code !== 0) throw new Error(`smtp-source failed against ${e.name} (${src.code}): ${src.stderr}`);
        const msgPerSecond = MESSAGES / ((performance.now() - started) / 1000);
        const cpuMs = (processCpu(e.child!.pid!) - cpu0) / MESSAGES;
        console.error(`${e.name} run ${i + 1}: ${msgPerSecond.toFixed(0)} msg/s, ${cpuMs.toFixed(3)} CPU ms per message`);
        if (i >= 2) {
          e.cpuMs.push(cpuMs);
          e.msgPerSecond.push(msgPerSecond);
        }
      }
    }
  } finally {
    for (const e of engines) e.child?.kill('SIGTERM');
  }
  const [own, library, floor] = engines.map((e) => ({ name: e.name, cpuMsPerMessage: median(e.cpuMs), msgPerSecond: median(e.msgPerSecond) }));
  const report = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model },
    node: process.version,
    load: { messages: MESSAGES, bytes: 2000, sessions: 20, reuse: false, runs: RUNS, statistic: 'median of runs 3 and later' },
    engines: [own, library, floor],
    savedCpuMsPerMessage: library!.cpuMsPerMessage - own!.cpuMsPerMessage,
    aboveFloorCpuMsPerMessage: own!.cpuMsPerMessage - floor!.cpuMsPerMessage,
  };
  const file = path.join(ROOT, 'bench/results/smtp-engines.json');
  fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`${report.machine.model}, ${report.machine.cpus} CPUs, Node ${process.version}; a new connection per message (median of runs 3-${RUNS})`);
  for (const e of report.engines) console.log(`${e!.name}: ${e!.cpuMsPerMessage.toFixed(3)} CPU ms per message, ${e!.msgPerSecond.toFixed(0)} msg/s`);
  console.log(`the relay's engine: ${(own!.cpuMsPerMessage / library!.cpuMsPerMessage).toFixed(2)}x smtp-server's CPU per message (${report.savedCpuMsPerMessage.toFixed(3)} ms less), ${report.aboveFloorCpuMsPerMessage.toFixed(3)} ms above the floor`);
  console.log(`written: ${path.relative(process.cwd(), file)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
