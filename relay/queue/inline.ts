/**
 * The queue in this thread (tests, libraries): the same client as the worker's, its messages
 * delivered by function call to a QueueRuntime here.
 */
import type { Logger } from 'pino';
import type { RelayConfig } from '../config.js';
import { QueueClient, type PermanentFailureListener } from './client.js';
import { QueueRuntime, type ToQueue } from './runtime.js';

/** The queue in this thread: the messages are delivered by function call. */
export class InlineQueue extends QueueClient {
  private readonly runtime: QueueRuntime;

  constructor(config: RelayConfig, log: Logger, onPermanentFailure?: PermanentFailureListener) {
    super(onPermanentFailure);
    this.runtime = new QueueRuntime(config, log, (m) => this.receive(m));
  }

  protected transmit(m: ToQueue): void {
    this.runtime.receive(m);
  }
}
