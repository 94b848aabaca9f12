/**
 * `npm run bench:cpu`: where the relay's CPU goes per message, thread by thread. The same load
 * as `npm run bench` (smtp-source, 2,000 messages of 2,000 bytes, 20 sessions, a new connection
 * per message; REUSE=1 for reused connections) into one relay relaying to smtp-sink, BENCH_RUNS
 * times (12). For each run: messages per second, and CPU milliseconds per message of the main
 * thread (intake, journal), the queue worker thread (delivery) and all other threads (V8's
 * helpers, libuv's pool), from /proc/PID/task, plus how busy the whole machine was. Medians
 * leave out the first two runs (the JIT warming up). CPU per message is steadier than
 * throughput on a shared machine, so compare changes with it.
 *
 * BENCH_NODE runs the relay on another Node; BENCH_LOG_LEVEL sets its log level (info).
 * BENCH_BASELINE=DIR runs a second relay from another checkout's build (`git worktree add DIR
 * COMMIT`, its node_modules linked, `npm run build` there) in the same sitting, each run
 * taking the two in turn (which goes first alternates), and reports both and their ratios:
 * the honest way to say what a change did on a shared machine.
 * BENCH_WEBHOOK=1 gives the measured relay (not the baseline) a webhook that takes every event,
 * so `BENCH_BASELINE=. BENCH_WEBHOOK=1` says what events cost. Writes bench/results/relay-cpu.json
 * (relay-cpu-webhook.json with BENCH_WEBHOOK).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runSmtpSource, startSmtpSink, type SmtpSink } from '../test/peers/smtp-sink.js';
import { startWebhookReceiver } from '../test/peers/webhook-receiver.js';
import { startBenchRelay, type BenchRelay } from './relay-process.js';
import { imageEnv, imageNodeFlags } from '../test/support/dockerfile.js';
import { median } from './stats.js';

const MESSAGES = 2000;
const RUNS = Math.max(3, Number(process.env.BENCH_RUNS ?? 12));
const REUSE = process.env.REUSE === '1';
const NODE = process.env.BENCH_NODE ?? process.execPath;
const LOG_LEVEL = process.env.BENCH_LOG_LEVEL ?? 'info';
const BASELINE = process.env.BENCH_BASELINE;
const WEBHOOK = process.env.BENCH_WEBHOOK === '1';
const WEBHOOK_KEY = 'bench-webhook-key-0123456789abcdefghijklmnop';
const ROOT = path.resolve(import.meta.dirname, '../..');
const TICK_MS = 1000 / 100; // USER_HZ

/** CPU milliseconds so far per thread of a process (utime + stime). */
function threadCpu(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(fields[11]) + Number(fields[12])) * TICK_MS);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

/** Busy and total jiffies of the whole machine. */
function machine(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + f[4]!;
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

interface Run {
  msgPerSecond: number;
  mainMs: number;
  workerMs: number;
  otherMs: number;
  machineBusy: number;
}

/** One run of the load into one relay, measured per thread. */
async function measure(relay: BenchRelay, sink: SmtpSink): Promise<Run> {
  const before = sink.count();
  const cpu0 = threadCpu(relay.pid);
  const m0 = machine();
  const started = performance.now();
  const src = await runSmtpSource({ port: relay.port, sessions: 20, count: MESSAGES, bytes: 2000, reuse: REUSE, from: 'bench@example.test', to: 'sink@dest.test' });
  if (src.code !== 0) throw new Error(`smtp-source failed (${src.code}): ${src.stderr}`);
  await sink.waitForCount(before + MESSAGES, 300_000);
  const seconds = (performance.now() - started) / 1000;
  const cpu1 = threadCpu(relay.pid);
  const m1 = machine();
  const used = new Map([...cpu1].map(([tid, ms]) => [tid, ms - (cpu0.get(tid) ?? 0)]));
  const main = used.get(relay.pid) ?? 0;
  // The queue worker is the busiest thread after the main one.
  const worker = Math.max(0, ...[...used].filter(([tid]) => tid !== relay.pid).map(([, ms]) => ms));
  const all = [...used.values()].reduce((a, b) => a + b, 0);
  return {
    msgPerSecond: MESSAGES / seconds,
    mainMs: main / MESSAGES,
    workerMs: worker / MESSAGES,
    otherMs: (all - main - worker) / MESSAGES,
    machineBusy: (m1.busy - m0.busy) / (m1.total - m0.total),
  };
}

function summary(runs: Run[], relay: BenchRelay) {
  const steady = runs.slice(2);
  const m = (k: keyof Run) => median(steady.map((r) => r[k]));
  return {
    msgPerSecond: m('msgPerSecond'),
    cpuMsPerMessage: { main: m('mainMs'), worker: m('workerMs'), other: m('otherMs'), total: m('mainMs') + m('workerMs') + m('otherMs') },
    machineBusy: m('machineBusy'),
    relayPeakRssBytes: relay.peakRssBytes(),
    runs,
  };
}

function print(name: string, s: ReturnType<typeof summary>): void {
  const c = s.cpuMsPerMessage;
  console.log(`${name}: ${s.msgPerSecond.toFixed(0)} msg/s; CPU ms per message: main ${c.main.toFixed(3)}, worker ${c.worker.toFixed(3)}, other ${c.other.toFixed(3)}, total ${c.total.toFixed(3)}`);
  console.log(`  machine ${(s.machineBusy * 100).toFixed(0)}% busy; relay peak RSS ${(s.relayPeakRssBytes / 1024 / 1024).toFixed(0)} MiB`);
}

async function main(): Promise<void> {
  const sink = await startSmtpSink({ backlog: 1024 });
  const receiver = WEBHOOK ? await startWebhookReceiver({ keys: { k1: WEBHOOK_KEY } }) : undefined;
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-bench-key-'));
  fs.writeFileSync(path.join(keyDir, 'k1'), WEBHOOK_KEY);
  const events = receiver ? { events: { webhooks: [{ name: 'bench', url: receiver.url, signingKeys: [{ id: 'k1', secretFile: path.join(keyDir, 'k1') }] }] } } : {};
  const relays: { name: string; relay: BenchRelay; runs: Run[] }[] = [{ name: WEBHOOK ? 'relay with a webhook' : 'relay', relay: await startBenchRelay(sink.port, NODE, LOG_LEVEL, ROOT, events), runs: [] }];
  if (BASELINE) relays.push({ name: `baseline (${BASELINE})`, relay: await startBenchRelay(sink.port, NODE, LOG_LEVEL, path.resolve(BASELINE)), runs: [] });
  try {
    for (let i = 0; i < RUNS; i++) {
      // Which goes first alternates, so neither always meets the machine as the other left it.
      for (const r of i % 2 ? [...relays].reverse() : relays) {
        const run = await measure(r.relay, sink);
        r.runs.push(run);
        console.error(
          `${r.name} run ${i + 1}: ${run.msgPerSecond.toFixed(0)} msg/s; CPU ms per message: main ${run.mainMs.toFixed(3)}, worker ${run.workerMs.toFixed(3)}, other ${run.otherMs.toFixed(3)}; machine ${(run.machineBusy * 100).toFixed(0)}% busy`,
        );
      }
    }
    const head = summary(relays[0]!.runs, relays[0]!.relay);
    const baseline = relays[1] && summary(relays[1].runs, relays[1].relay);
    const report = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model },
      relayNode: NODE === process.execPath ? process.version : spawnSync(NODE, ['--version']).stdout.toString().trim(),
      relayNodeFlags: imageNodeFlags(),
      relayEnv: imageEnv(),
      load: { messages: MESSAGES, bytes: 2000, sessions: 20, reuse: REUSE, runs: RUNS, logLevel: LOG_LEVEL, webhook: WEBHOOK, statistic: 'median of runs 3 and later' },
      ...(receiver && { webhook: { eventsTaken: receiver.events.length, duplicates: receiver.duplicates, refused: receiver.refused.length } }),
      ...head,
      ...(baseline && {
        baseline: { checkout: BASELINE, ...baseline },
        vsBaseline: { cpuPerMessage: head.cpuMsPerMessage.total / baseline.cpuMsPerMessage.total, msgPerSecond: head.msgPerSecond / baseline.msgPerSecond, peakRss: head.relayPeakRssBytes / baseline.relayPeakRssBytes },
      }),
    };
    const file = path.join(ROOT, `bench/results/relay-cpu${WEBHOOK ? '-webhook' : ''}.json`);
    fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
    console.log(`${os.cpus()[0]?.model}, ${os.cpus().length} CPUs; ${REUSE ? 'reused connections' : 'a new connection per message'}, log level ${LOG_LEVEL} (median of runs 3-${RUNS})`);
    print(relays[0]!.name, head);
    if (receiver) console.log(`  the webhook took ${receiver.events.length} events (${receiver.duplicates} duplicates, ${receiver.refused.length} refused)`);
    if (baseline) {
      print(`baseline (${BASELINE})`, baseline);
      const v = report.vsBaseline!;
      console.log(`relay / baseline: CPU per message ${v.cpuPerMessage.toFixed(2)}x, msg/s ${v.msgPerSecond.toFixed(2)}x, peak RSS ${v.peakRss.toFixed(2)}x`);
    }
    console.log(`written: ${path.relative(process.cwd(), file)}`);
  } finally {
    for (const r of relays) await r.relay.stop();
    await sink.stop();
    await receiver?.stop();
    fs.rmSync(keyDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
