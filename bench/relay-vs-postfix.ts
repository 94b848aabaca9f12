/**
 * `npm run bench`: the relay against Postfix on the same machine in the same run.
 *
 * smtp-source offers 2,000 messages of 2,000 bytes over 20 sessions, with a new connection
 * per message and with connections reused (-d), to (a) smtp-sink directly (the loopback
 * limit), (b) the relay's SMTP engine with nothing behind it (bench/engine-alone.ts: the
 * ceiling its intake sets), (c) the relay (durable spool, smarthost route) relaying to smtp-sink,
 * and (d) a private Postfix relaying to the same smtp-sink. End to end means from the first
 * connection to the last message counted at the sink (for (b), to smtp-source's last reply).
 * Every scenario is warmed up BENCH_WARMUP times (3), then run in BENCH_RUNS rounds (5) that
 * take each scenario in turn; medians are reported, and each server's first (cold) run too.
 * Both MTAs fsync each message before their 250.
 *
 * BENCH_NODE=/path/to/node runs the relay (and its engine alone) on another Node, e.g. the
 * image's LTS; the report says which. Writes bench/results/relay-vs-postfix.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { findBinary } from '../test/peers/availability.js';
import { freePort, waitForPort } from '../test/peers/ports.js';
import { startPostfix } from '../test/peers/postfix.js';
import { imageEnv, imageNodeFlags } from '../test/support/dockerfile.js';
import { startBenchRelay } from './relay-process.js';
import { median, percentile } from './stats.js';
import { runSmtpSource, startSmtpSink, type SmtpSink } from '../test/peers/smtp-sink.js';
import { SmtpTalk } from '../test/support/smtp-talk.js';

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 2000);
const BYTES = 2000;
const SESSIONS = 20;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const WARMUP = Math.max(1, Number(process.env.BENCH_WARMUP ?? 3));
const ROOT = path.resolve(import.meta.dirname, '../..');
/** The Node the relay runs on: this one, or BENCH_NODE. */
const RELAY_NODE = process.env.BENCH_NODE ?? process.execPath;

interface Scenario {
  name: string;
  port: number;
  reuse: boolean;
}

/** Messages per second from the first connection to the last message at the sink. */
async function endToEnd(sink: SmtpSink, port: number, reuse: boolean): Promise<number> {
  const before = sink.count();
  const started = performance.now();
  const src = await runSmtpSource({ port, sessions: SESSIONS, count: MESSAGES, bytes: BYTES, reuse, from: 'bench@example.test', to: 'sink@dest.test' });
  if (src.code !== 0) throw new Error(`smtp-source failed (${src.code}): ${src.stderr}`);
  await sink.waitForCount(before + MESSAGES, 300_000);
  return MESSAGES / ((performance.now() - started) / 1000);
}

/** Messages per second that smtp-source gets through (for a server that delivers nothing). */
async function intakeOnly(port: number, reuse: boolean): Promise<number> {
  const started = performance.now();
  const src = await runSmtpSource({ port, sessions: SESSIONS, count: MESSAGES, bytes: BYTES, reuse, from: 'bench@example.test', to: 'sink@dest.test' });
  if (src.code !== 0) throw new Error(`smtp-source failed (${src.code}): ${src.stderr}`);
  return MESSAGES / ((performance.now() - started) / 1000);
}

async function startEngineAlone(): Promise<{ port: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const child = spawn(RELAY_NODE, [...imageNodeFlags(), path.join(ROOT, 'dist/bench/engine-alone.js'), String(port)], { stdio: 'inherit', env: { ...process.env, ...imageEnv() } });
  await waitForPort(port, { what: 'the engine alone' });
  return {
    port,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** Time from the final dot to the 250, per message: 20 sessions with 50 messages each. */
async function acceptLatencies(port: number): Promise<number[]> {
  const out: number[] = [];
  const body = `Subject: latency\r\n\r\n${'x'.repeat(BYTES - 30)}\r\n`;
  await Promise.all(
    Array.from({ length: SESSIONS }, async () => {
      const { talk } = await SmtpTalk.connect(port);
      await talk.send('EHLO bench.test');
      for (let i = 0; i < 50; i++) {
        await talk.send('MAIL FROM:<bench@example.test>');
        await talk.send('RCPT TO:<sink@dest.test>');
        const t = performance.now();
        const reply = await talk.data(body);
        if (!reply.startsWith('250')) throw new Error(`not accepted: ${reply}`);
        out.push(performance.now() - t);
      }
      await talk.quit();
    }),
  );
  return out;
}

async function main(): Promise<void> {
  for (const bin of ['/usr/sbin/postfix', '/usr/sbin/smtp-sink', '/usr/sbin/smtp-source']) {
    if (!findBinary(bin)) throw new Error(`${bin} is missing: apt-get install -y postfix (see .ci/run)`);
  }
  const sink = await startSmtpSink({ backlog: 1024 });
  const relay = await startBenchRelay(sink.port, RELAY_NODE);
  const postfix = await startPostfix({ relayhost: `127.0.0.1:${sink.port}`, extraMain: { default_destination_concurrency_limit: '20' } });
  const alone = await startEngineAlone();
  try {
    const scenarios: Scenario[] = [];
    for (const reuse of [false, true]) {
      scenarios.push(
        { name: 'loopback', port: sink.port, reuse },
        { name: 'engineAlone', port: alone.port, reuse },
        { name: 'relay', port: relay.port, reuse },
        { name: 'postfix', port: postfix.port, reuse },
      );
    }
    const results: Record<string, number[]> = {};
    const firstRun: Record<string, number> = {};
    const keyOf = (s: Scenario) => `${s.name}${s.reuse ? '_reuse' : ''}`;
    const measure = (s: Scenario) => (s.name === 'engineAlone' ? intakeOnly(s.port, s.reuse) : endToEnd(sink, s.port, s.reuse));
    for (const reuse of [false, true]) {
      const group = scenarios.filter((s) => s.reuse === reuse);
      // Every server warms up the same way (the relay's JIT needs a few thousand messages to
      // reach the steady state a long-running relay is in; the first run is reported as well).
      for (const s of group) {
        for (let i = 0; i < WARMUP; i++) {
          const rate = await measure(s);
          if (i === 0) firstRun[keyOf(s)] = rate;
          console.error(`${keyOf(s)}: warm-up ${i + 1}: ${rate.toFixed(0)} msg/s`);
        }
        results[keyOf(s)] = [];
      }
      // Rounds, each running every scenario once: a slow spell of this shared machine then
      // touches all of them, not just one. Every other round goes in reverse, so no server
      // always follows the same one (and inherits its leftover disk work).
      for (let i = 0; i < RUNS; i++) {
        for (const s of i % 2 ? [...group].reverse() : group) {
          const rate = await measure(s);
          results[keyOf(s)]!.push(rate);
          console.error(`${keyOf(s)}: run ${i + 1}: ${rate.toFixed(0)} msg/s`);
        }
      }
    }
    const relayLatency = await acceptLatencies(relay.port);
    const postfixLatency = await acceptLatencies(postfix.port);
    const m = (k: string) => median(results[k]!);
    const report = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, relayNode: execFileSync(RELAY_NODE, ['--version'], { encoding: 'utf8' }).trim(), relayNodeFlags: imageNodeFlags(), relayEnv: imageEnv() },
      load: { messages: MESSAGES, bytes: BYTES, sessions: SESSIONS, warmupRuns: WARMUP, runs: RUNS, statistic: `median of ${RUNS} runs, taken in rounds, after ${WARMUP} warm-up runs` },
      msgPerSecond: {
        loopback: m('loopback'),
        loopbackReuse: m('loopback_reuse'),
        engineAlone: m('engineAlone'),
        engineAloneReuse: m('engineAlone_reuse'),
        relay: m('relay'),
        relayReuse: m('relay_reuse'),
        postfix: m('postfix'),
        postfixReuse: m('postfix_reuse'),
      },
      ratio: {
        relayToPostfix: m('relay') / m('postfix'),
        relayToPostfixReuse: m('relay_reuse') / m('postfix_reuse'),
        // The same, from each round's own pair (the two ran back to back): less swayed by a slow spell.
        relayToPostfixRoundMedian: median(results.relay!.map((r, i) => r / results.postfix![i]!)),
        relayToPostfixReuseRoundMedian: median(results.relay_reuse!.map((r, i) => r / results.postfix_reuse![i]!)),
        // How close the relay comes to its SMTP library doing nothing at all.
        relayToEngineAlone: m('relay') / m('engineAlone'),
        relayToEngineAloneReuse: m('relay_reuse') / m('engineAlone_reuse'),
      },
      acceptLatencyMs: {
        relay: { p50: percentile(relayLatency, 50), p99: percentile(relayLatency, 99) },
        postfix: { p50: percentile(postfixLatency, 50), p99: percentile(postfixLatency, 99) },
      },
      relayPeakRssBytes: relay.peakRssBytes(),
      /** Each server's very first run (cold: the relay's JIT has not compiled its hot paths yet). */
      firstRunMsgPerSecond: firstRun,
      runs: results,
    };
    const file = path.join(ROOT, 'bench/results/relay-vs-postfix.json');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
    const r = report.msgPerSecond;
    console.log(`end to end, ${MESSAGES} x ${BYTES} B, ${SESSIONS} sessions (median msg/s)`);
    console.log(`                      new connection   reused (-d)`);
    console.log(`  loopback limit      ${r.loopback.toFixed(0).padStart(14)}   ${r.loopbackReuse.toFixed(0).padStart(11)}`);
    console.log(`  engine alone        ${r.engineAlone.toFixed(0).padStart(14)}   ${r.engineAloneReuse.toFixed(0).padStart(11)}`);
    console.log(`  mailfleet relay     ${r.relay.toFixed(0).padStart(14)}   ${r.relayReuse.toFixed(0).padStart(11)}`);
    console.log(`  postfix             ${r.postfix.toFixed(0).padStart(14)}   ${r.postfixReuse.toFixed(0).padStart(11)}`);
    console.log(`  relay / postfix     ${report.ratio.relayToPostfix.toFixed(2).padStart(14)}   ${report.ratio.relayToPostfixReuse.toFixed(2).padStart(11)}`);
    console.log(`  (median of rounds)  ${report.ratio.relayToPostfixRoundMedian.toFixed(2).padStart(14)}   ${report.ratio.relayToPostfixReuseRoundMedian.toFixed(2).padStart(11)}`);
    console.log(`accept latency (final dot to 250): relay p50 ${report.acceptLatencyMs.relay.p50.toFixed(2)} ms, p99 ${report.acceptLatencyMs.relay.p99.toFixed(2)} ms; postfix p50 ${report.acceptLatencyMs.postfix.p50.toFixed(2)} ms, p99 ${report.acceptLatencyMs.postfix.p99.toFixed(2)} ms`);
    console.log(`first run (cold): relay ${firstRun.relay!.toFixed(0)}, postfix ${firstRun.postfix!.toFixed(0)} msg/s (${(firstRun.relay! / firstRun.postfix!).toFixed(2)}x)`);
    console.log(`relay peak RSS: ${(report.relayPeakRssBytes / 1024 / 1024).toFixed(0)} MiB`);
    console.log(`written: ${path.relative(process.cwd(), file)}`);
  } finally {
    await alone.stop();
    await relay.stop();
    await postfix.stop();
    await sink.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
