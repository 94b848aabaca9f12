/** The per-user message rate (limits.messagesPerUserPerMinute): a sliding one-minute window of accepted MAIL FROMs, time an argument. */

export class RateWindow {
  private readonly hits = new Map<string, number[]>();

  /** Whether `key` may start one more within the minute before `now`; counts it when it may. */
  allow(key: string, limit: number, now: number): boolean {
    const recent = (this.hits.get(key) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= limit) {
      this.hits.set(key, recent);
      return false;
    }
    recent.push(now);
    this.hits.set(key, recent);
    return true;
  }
}
