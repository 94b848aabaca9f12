/**
 * The queue's decisions, apart from sockets and disks: which delivery units are ready,
 * deferred or in flight, when each is due, and how many connections each destination may
 * have. Time comes in as an argument so tests drive it with a fake clock.
 *
 * A unit is one message's recipients for one destination (a recipient domain, or the
 * smarthost): a message to two domains is two units with their own retry timing.
 */
export interface Unit {
  /** `${messageId}/${destination}` */
  id: string;
  messageId: string;
  destination: string;
  recipients: string[];
  /** Failed attempts so far; drives the backoff. */
  attempts: number;
  /** When the unit may next be tried (ms since epoch). */
  dueAt: number;
  /** When the message was accepted (ms): the lifetime counts from here. */
  receivedAt: number;
}

export interface SchedulerOptions {
  maxConnections: number;
  maxConnectionsPerDestination: number;
  /** seconds */
  minBackoff: number;
  /** seconds */
  maxBackoff: number;
  /** seconds */
  lifetime: number;
  /** Spread retries so a destination's deferred mail does not return all at once: 0..1 -> factor. */
  jitter?: () => number;
}

export type FailureDecision = { kind: 'retry'; at: number } | { kind: 'expired' };

interface Destination {
  ready: Unit[];
  connections: number;
}

export interface QueueStats {
  ready: number;
  deferred: number;
  inflight: number;
  /** Seconds the oldest ready unit has been due, 0 when none is. */
  oldestReadySeconds: number;
}

export class Scheduler {
  private readonly destinations = new Map<string, Destination>();
  /** Deferred units ordered by dueAt (a binary heap). */
  private readonly deferred: Unit[] = [];
  private readonly inflight = new Set<string>();
  private totalConnections = 0;
  private readyCount = 0;

  constructor(private options: SchedulerOptions) {}

  /** Applies new limits (config reload); units keep their timing. */
  reconfigure(options: SchedulerOptions): void {
    this.options = options;
  }

  /** Adds a unit: ready if due, else deferred. */
  add(unit: Unit, now: number): void {
    if (unit.dueAt <= now) this.pushReady(unit);
    else heapPush(this.deferred, unit);
  }

  /** Moves units whose time has come from deferred to ready. */
  tick(now: number): void {
    while (this.deferred.length && this.deferred[0]!.dueAt <= now) this.pushReady(heapPop(this.deferred)!);
  }

  /** When the next deferred unit becomes due, for the caller's timer. */
  nextDueAt(): number | undefined {
    return this.deferred[0]?.dueAt;
  }

  /**
   * A destination that should get one more connection now: it has more ready units than
   * open connections, and neither its limit nor the total limit is reached. The caller
   * opens the connection; the count is taken here.
   */
  openConnection(): string | undefined {
    if (this.totalConnections >= this.options.maxConnections) return undefined;
    let best: { name: string; dest: Destination } | undefined;
    for (const [name, dest] of this.destinations) {
      if (dest.ready.length <= dest.connections || dest.connections >= this.options.maxConnectionsPerDestination) continue;
      // Oldest head first, so one busy destination does not starve the others.
      if (!best || dest.ready[0]!.dueAt < best.dest.ready[0]!.dueAt) best = { name, dest };
    }
    if (!best) return undefined;
    best.dest.connections++;
    this.totalConnections++;
    return best.name;
  }

  closeConnection(destination: string): void {
    const dest = this.destinations.get(destination);
    if (!dest) return;
    dest.connections--;
    this.totalConnections--;
    this.forgetIfIdle(destination, dest);
  }

  /** Ready units of a destination. */
  readyFor(destination: string): number {
    return this.destinations.get(destination)?.ready.length ?? 0;
  }

  /** Open connections to a destination. */
  connectionsTo(destination: string): number {
    return this.destinations.get(destination)?.connections ?? 0;
  }

  /**
   * Takes every unit that is not in flight out of the queue (ready and deferred), for a
   * caller that must regroup them (the route changed).
   */
  takeAllWaiting(): Unit[] {
    const units = [...this.deferred.splice(0)];
    for (const dest of this.destinations.values()) units.push(...dest.ready.splice(0));
    this.readyCount = 0;
    for (const [name, dest] of this.destinations) this.forgetIfIdle(name, dest);
    return units;
  }

  /** The next ready unit for a connection to this destination, now in flight. */
  take(destination: string): Unit | undefined {
    const dest = this.destinations.get(destination);
    const unit = dest?.ready.shift();
    if (!unit) return undefined;
    this.readyCount--;
    this.inflight.add(unit.id);
    return unit;
  }

  /** The unit is finished (every recipient delivered or failed for good). */
  complete(unit: Unit): void {
    this.inflight.delete(unit.id);
  }

  /**
   * After a temporary failure: retry after a growing backoff, never later than the
   * lifetime allows; past the lifetime the unit has expired and must bounce.
   */
  decideAfterFailure(unit: Unit, now: number): FailureDecision {
    const expiresAt = unit.receivedAt + this.options.lifetime * 1000;
    if (now >= expiresAt) return { kind: 'expired' };
    const at = Math.min(now + this.backoffSeconds(unit.attempts + 1) * 1000, expiresAt);
    return { kind: 'retry', at };
  }

  /** Puts an in-flight unit back with its next due time. */
  defer(unit: Unit, at: number, now: number): void {
    this.inflight.delete(unit.id);
    unit.attempts++;
    unit.dueAt = at;
    this.add(unit, now);
  }

  /**
   * Takes every ready unit of a destination out of the ready queue (a dead destination:
   * the caller fails them all with the same outcome instead of connecting for each).
   */
  drainDestination(destination: string): Unit[] {
    const dest = this.destinations.get(destination);
    if (!dest) return [];
    const units = dest.ready.splice(0);
    this.readyCount -= units.length;
    for (const u of units) this.inflight.add(u.id);
    return units;
  }

  /** Backoff before attempt n+1 after n failures: minBackoff doubling up to maxBackoff. */
  backoffSeconds(failures: number): number {
    const { minBackoff, maxBackoff, jitter } = this.options;
    const base = Math.min(maxBackoff, minBackoff * 2 ** Math.max(0, failures - 1));
    // Up to 10% less, so retries of one destination spread out.
    return jitter ? base * (1 - 0.1 * jitter()) : base;
  }

  stats(now: number): QueueStats {
    let oldest = Infinity;
    for (const dest of this.destinations.values()) {
      for (const u of dest.ready) if (u.dueAt < oldest) oldest = u.dueAt;
    }
    return {
      ready: this.readyCount,
      deferred: this.deferred.length,
      inflight: this.inflight.size,
      oldestReadySeconds: oldest === Infinity ? 0 : Math.max(0, (now - oldest) / 1000),
    };
  }

  private pushReady(unit: Unit): void {
    let dest = this.destinations.get(unit.destination);
    if (!dest) {
      dest = { ready: [], connections: 0 };
      this.destinations.set(unit.destination, dest);
    }
    dest.ready.push(unit);
    this.readyCount++;
  }

  private forgetIfIdle(name: string, dest: Destination): void {
    if (dest.connections === 0 && dest.ready.length === 0) this.destinations.delete(name);
  }
}

function heapPush(heap: Unit[], unit: Unit): void {
  heap.push(unit);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]!.dueAt <= heap[i]!.dueAt) break;
    [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
    i = parent;
  }
}

function heapPop(heap: Unit[]): Unit | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length && last) {
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && heap[l]!.dueAt < heap[m]!.dueAt) m = l;
      if (r < heap.length && heap[r]!.dueAt < heap[m]!.dueAt) m = r;
      if (m === i) break;
      [heap[m], heap[i]] = [heap[i]!, heap[m]!];
      i = m;
    }
  }
  return top;
}
