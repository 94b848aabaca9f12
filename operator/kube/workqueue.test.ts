import { describe, expect, it, vi } from 'vitest';
import { WorkQueue } from './workqueue.js';

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

describe('WorkQueue', () => {
  it('reconciles a key once however often it is added, and never twice at once', async () => {
    let running = 0;
    let most = 0;
    const runs: string[] = [];
    let release!: () => void;
    const q = new WorkQueue(
      async (key) => {
        running++;
        most = Math.max(most, running);
        runs.push(key);
        if (runs.length === 1) await new Promise<void>((r) => (release = r));
        running--;
      },
      { concurrency: 4, baseBackoffMs: 10, maxBackoffMs: 100 },
    );
    q.add('a');
    q.add('a');
    q.add('b');
    await tick();
    q.add('a'); // while a is running: it runs again afterwards, not alongside
    q.add('a');
    await tick();
    expect(runs).toEqual(['a', 'b']);
    release();
    await tick(5);
    expect(runs).toEqual(['a', 'b', 'a']);
    expect(most).toBe(2);
    await q.stop();
  });

  it('retries a failing key with a growing backoff, honours a requested requeue, and then leaves the key alone', async () => {
    // The queue's clock is faked: the gaps are exact, and running every timer there is shows
    // that nothing is left to run (a key requeued for ever would abort after 10,000 timers).
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const times: number[] = [];
      const started = Date.now();
      let attempts = 0;
      const outcomes: string[] = [];
      const q = new WorkQueue(
        async () => {
          times.push(Date.now() - started);
          if (++attempts < 4) throw new Error('conflict');
          if (attempts === 4) return { requeueAfterMs: 30 };
        },
        { concurrency: 1, baseBackoffMs: 20, maxBackoffMs: 1000, onResult: (_k, outcome) => outcomes.push(outcome) },
      );
      q.add('k');
      await vi.runAllTimersAsync();
      expect(outcomes).toEqual(['error', 'error', 'error', 'success', 'success']);
      // 20, 40, 80 ms of backoff, then the requested 30 ms.
      expect(times).toEqual([0, 20, 60, 140, 170]);
      await q.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});
