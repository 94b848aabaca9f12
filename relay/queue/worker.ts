/** The queue's worker thread: a QueueRuntime (relay/queue/runtime.ts) driven by the main thread's messages. */
import { parentPort, workerData } from 'node:worker_threads';
import type { RelayConfig } from '../config.js';
import { createLogger } from '../log.js';
import { QueueRuntime, type FromQueue, type ToQueue } from './runtime.js';

const { config, logLevel } = workerData as { config: RelayConfig; logLevel: string };
// Synchronous: the main thread terminates this thread once it answers stop.
const log = createLogger(logLevel);
const port = parentPort!;
const runtime = new QueueRuntime(config, log, (m: FromQueue) => port.postMessage(m));

port.on('message', (m: ToQueue) => {
  // This thread's own logger follows the config (the main thread's follows it there).
  if (m.type === 'reconfigure') log.level = m.config.log.level;
  runtime.receive(m);
});
