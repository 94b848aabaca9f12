/** The queue's worker thread: an InlineQueue driven by messages from relay/queue-handle.ts. */
import { parentPort, workerData } from 'node:worker_threads';
import type { RelayConfig } from './config.js';
import { createLogger } from './log.js';
import type { JournalLocation } from './journal.js';
import { InlineQueue, type FromWorker, type ToWorker } from './queue-handle.js';
import { Spool } from './spool.js';

const { config, logLevel } = workerData as { config: RelayConfig; logLevel: string };
// Synchronous: the main thread terminates this thread once it answers stop.
const log = createLogger(logLevel, { sync: true });
const port = parentPort!;
const send = (m: FromWorker) => port.postMessage(m);
// The main thread writes the journal, so it also marks its finished messages: tell it, a
// batch per turn of the event loop.
let marks: [JournalLocation, string][] = [];
const sendMarks = () => {
  if (marks.length) send({ type: 'journalDone', marks });
  marks = [];
};
const spool = new Spool(config.spool.dir, {
  journalDone: (location, id) => {
    if (!marks.length) setImmediate(sendMarks);
    marks.push([location, id]);
  },
});
// The suppression list lives in the main thread, where intake reads it.
const queue = new InlineQueue(config, log, spool, (failure) => send({ type: 'permanentFailure', failure }), true);

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'start':
      queue.start().then(
        (summary) => send({ type: 'started', summary }),
        (err: Error) => send({ type: 'failed', message: err.message }),
      );
      break;
    case 'enqueue':
      for (const entry of m.entries) {
        // Structured clone turns a Buffer into a plain Uint8Array.
        const body = entry.body;
        if (body) entry.body = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
        queue.enqueue(entry);
      }
      break;
    case 'reconfigure':
      log.level = m.config.log.level;
      queue.reconfigure(m.config);
      break;
    case 'stop':
      // Every mark goes before the answer: the main thread then reads a spool that is up to date.
      void queue.stop(m.deadlineMs).then((left) => {
        sendMarks();
        send({ type: 'reply', id: m.id, value: left });
      });
      break;
    case 'stats':
      void queue.stats().then((value) => send({ type: 'reply', id: m.id, value }));
      break;
    case 'metrics':
      void queue.metrics().then((value) => send({ type: 'reply', id: m.id, value }));
      break;
  }
});
