/**
 * `npm run bench:scale-out`: would a second intake thread help on this machine? Offers the
 * relay-vs-postfix load (2,000 messages of 2,000 bytes, 20 sessions, a new connection per
 * message) to one relay, and to two relay processes side by side with 10 sessions each (two
 * intakes, two queues: an upper bound for what intake threads could add), alternating, both
 * relaying to one smtp-sink. Prints the medians; writes bench/results/scale-out.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runSmtpSource, startSmtpSink, type SmtpSink } from '../test/peers/smtp-sink.js';
import { startBenchRelay } from './relay-process.js';
import { median } from './stats.js';

const MESSAGES = 2000;
const SESSIONS = 20;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const ROOT = path.resolve(import.meta.dirname, '../..');

/** Messages per second to the last one at the sink, the sessions split evenly over the ports. */
async function once(sink: SmtpSink, ports: number[]): Promise<number> {
  const before = sink.count();
  const started = performance.now();
  const results = await Promise.all(
    ports.map((port) => runSmtpSource({ port, sessions: SESSIONS / ports.length, count: MESSAGES / ports.length, bytes: 2000, from: 'bench@example.test', to: 'sink@dest.test' })),
  );
  for (const r of results) if (r.code !== 0) throw new Error(`smtp-source failed (${r.code}): ${r.stderr}`);
  await sink.waitForCount(before + MESSAGES, 300_000);
  return MESSAGES / ((performance.now() - started) / 1000);
}


async function main(): Promise<void> {
  const sink = await startSmtpSink({ backlog: 1024 });
  const a = await startBenchRelay(sink.port);
  const b = await startBenchRelay(sink.port);
  try {
    // Warm both up first.
    await once(sink, [a.port]);
    await once(sink, [a.port, b.port]);
    const one: number[] = [];
    const two: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      one.push(await once(sink, [a.port]));
      two.push(await once(sink, [a.port, b.port]));
    }
    const report = { date: new Date().toISOString(), cpus: os.cpus().length, node: process.version, runs: RUNS, oneRelay: { median: median(one), runs: one }, twoRelays: { median: median(two), runs: two }, ratio: median(two) / median(one) };
    const file = path.join(ROOT, 'bench/results/scale-out.json');
    fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
    console.log(`one relay, ${SESSIONS} sessions:        ${one.map((x) => x.toFixed(0)).join(' ')}  median ${median(one).toFixed(0)} msg/s`);
    console.log(`two relays, ${SESSIONS / 2} sessions each:  ${two.map((x) => x.toFixed(0)).join(' ')}  median ${median(two).toFixed(0)} msg/s`);
    console.log(`two / one: ${report.ratio.toFixed(2)}; written: ${path.relative(process.cwd(), file)}`);
  } finally {
    await a.stop();
    await b.stop();
    await sink.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
