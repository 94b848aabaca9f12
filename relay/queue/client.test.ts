import { describe, expect, it } from 'vitest';
import { QueueClient } from './client.js';
import type { ToQueue } from './runtime.js';

/** A queue thread that answers stop and then is gone, as a terminated worker is: nothing it is sent is answered. */
class StoppingQueue extends QueueClient {
  private stopped = false;
  protected transmit(m: ToQueue): void {
    if (this.stopped) return;
    if (m.type === 'stop') {
      this.stopped = true;
      queueMicrotask(() => this.receive({ type: 'reply', id: m.id, value: 3 }));
    }
  }
}

describe('the main thread end of the queue', () => {
  it('answers questions asked after the queue stopped (a /metrics scrape during the handoff) empty, instead of never', async () => {
    const queue = new StoppingQueue();
    expect(await queue.stop(Date.now())).toBe(3);
    expect(await queue.stats()).toEqual({ ready: 0, deferred: 0, inflight: 0, oldestReadySeconds: 0, overdueSeconds: 0 });
    expect(await queue.metrics()).toEqual([]);
    expect(await queue.publish([])).toBe(0);
  });
});
