/**
 * `npm run bench:spool`: a spool of 100,000 messages (2 KB each, as the issue asks) and what
 * it costs the relay to take it back after a restart: recovery time, and memory for the
 * queue (envelopes only: bodies stay on disk). Twice: with every message in the journal (a
 * crash while all of it was on its first attempt) and with every message in a file of its own
 * (mail that stayed: deferred, or over 256 KiB). Writes bench/results/spool-scale.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Scheduler } from '../relay/queue/scheduler.js';
import { Spool, newQueueId, type Envelope } from '../relay/spool/spool.js';

const N = Number(process.env.BENCH_SPOOL_MESSAGES ?? 100_000);
const ROOT = path.resolve(import.meta.dirname, '../..');

type Layout = 'journal' | 'files';

async function measure(layout: Layout): Promise<Record<string, number | string>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-spool-scale-'));
  try {
    const body = Buffer.from(`Subject: scale\r\n\r\n${'x'.repeat(1980)}\r\n`);
    const spool = new Spool(dir);
    await spool.open();
    let next = 0;
    const t0 = performance.now();
    // 20 writers at once, like 20 SMTP sessions.
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (next < N) {
          const i = next++;
          const env: Envelope = {
            id: newQueueId(),
            sender: 'app@example.test',
            recipients: [{ address: `r${i}@dest${i % 50}.test`, status: 'pending' }],
            receivedAt: Date.now(),
            listener: 'bench',
            client: '127.0.0.1',
            headerLength: 18,
            attempts: 0,
            nextAttemptAt: Date.now(),
          };
          if (layout === 'journal') await spool.append(env, body);
          else await spool.store(env, body);
        }
      }),
    );
    await spool.close();
    const storeSeconds = (performance.now() - t0) / 1000;
    console.error(`${layout}: stored ${N} messages in ${storeSeconds.toFixed(1)} s (${(N / storeSeconds).toFixed(0)} msg/s, each durable before the next from its writer)`);

    global.gc?.();
    const before = process.memoryUsage();
    const t1 = performance.now();
    const report = await new Spool(dir).recover();
    const scheduler = new Scheduler({ maxConnections: 100, maxConnectionsPerDestination: 20, minBackoff: 60, maxBackoff: 3600, lifetime: 432000 });
    for (const e of report.entries) {
      const r = e.envelope.recipients[0]!;
      const dest = r.address.split('@')[1]!;
      scheduler.add({ id: `${e.envelope.id}/${dest}`, messageId: e.envelope.id, destination: dest, recipients: [r.address], attempts: 0, dueAt: e.envelope.nextAttemptAt, receivedAt: e.envelope.receivedAt }, Date.now());
    }
    const recoverSeconds = (performance.now() - t1) / 1000;
    global.gc?.();
    const after = process.memoryUsage();
    const result = {
      layout,
      messages: N,
      messageBytes: body.length,
      storeMsgPerSecond: N / storeSeconds,
      recoverSeconds,
      recovered: report.entries.length,
      heapBytesPerMessage: (after.heapUsed - before.heapUsed) / N,
      rssGrowthBytes: after.rss - before.rss,
      bodiesInMemory: report.entries.filter((e) => e.body).length,
    };
    console.log(
      `${layout}: stored at ${result.storeMsgPerSecond.toFixed(0)} msg/s; recovered ${result.recovered} messages in ${recoverSeconds.toFixed(1)} s; heap ${result.heapBytesPerMessage.toFixed(0)} B per message ` +
        `(${((after.heapUsed - before.heapUsed) / 1024 / 1024).toFixed(0)} MiB for the queue, bodies ${((N * body.length) / 1024 / 1024).toFixed(0)} MiB stay on disk); bodies in memory: ${result.bodiesInMemory}`,
    );
    return result;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const results = { date: new Date().toISOString(), journal: await measure('journal'), files: await measure('files') };
  const file = path.join(ROOT, 'bench/results/spool-scale.json');
  fs.writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  console.log(`written: ${path.relative(process.cwd(), file)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
