import { afterEach } from 'vitest';

/**
 * Registers an afterEach that stops, newest first, everything a test handed to `defer`.
 * Call it at the top of a describe block; it keeps going when one stop() fails.
 */
export function useTeardown(): (stop: () => Promise<void> | void) => void {
  const stops: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    const errors: unknown[] = [];
    for (const stop of stops.splice(0).reverse()) {
      try {
        await stop();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'teardown failed');
  });
  return (stop) => {
    stops.push(stop);
  };
}
