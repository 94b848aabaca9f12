/**
 * Outbound connections kept open a moment for mail that is about to come (Postfix's
 * connection cache does the same): a steady trickle then costs no connection per message.
 * A connection with nothing to carry waits here; new ready units wake it before the queue
 * opens new connections.
 */
export class IdleConnections {
  private readonly waiting = new Map<string, Set<(work: boolean) => void>>();

  /** Resolves true when a unit for this destination may be ready, false after `seconds` (or at once when 0). */
  wait(destination: string, seconds: number): Promise<boolean> {
    if (seconds <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const waiters = this.waiting.get(destination) ?? new Set();
      this.waiting.set(destination, waiters);
      const wake = (work: boolean) => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (!waiters.size) this.waiting.delete(destination);
        resolve(work);
      };
      const timer = setTimeout(() => wake(false), seconds * 1000);
      waiters.add(wake);
    });
  }

  /** Wakes as many idle connections per destination as it has units ready (`readyFor`). */
  wake(readyFor: (destination: string) => number): void {
    for (const [destination, waiters] of this.waiting) {
      let ready = readyFor(destination);
      for (const wake of [...waiters]) {
        if (ready-- <= 0) break;
        wake(true);
      }
    }
  }

  /** Stopping: every idle connection closes now. */
  release(): void {
    for (const waiters of this.waiting.values()) for (const wake of [...waiters]) wake(false);
  }
}
