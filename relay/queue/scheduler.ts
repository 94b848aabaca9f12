/**
 * The queue's decisions, apart from sockets and disks: which delivery units are ready,
 * deferred or in flight, when each is due, and how many connections each destination may
 * have. Time comes in as an argument so tests drive it with a fake clock.
 *
 * A unit is one message's recipients for one destination (a recipient domain, or the
 * smarthost): a message to two domains is two units with their own retry timing.
 *
 * Over 400 lines, and one unit on purpose: the ready queues, the deferred heap, the in-flight
 * set and the connection counts per destination and provider are one state whose invariants
 * (a unit is in exactly one of them; counts match open connections) every method keeps.
 * Split apart, each piece would have to trust the others to keep them.
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
  /**
   * The provider a destination belongs to (destinations of one provider share its limits);
   * undefined while not known yet: such a destination gets no connection until it is.
   * Without this option every destination is its own group with no group limits.
   */
  groupOf?: (destination: string) => string | undefined;
  /** A provider's limits; undefined: none beyond the per-destination ones. */
  groupLimits?: (group: string) => GroupLimits | undefined;
  /**
   * A unit came with a due time, acceptance time or attempt count that is not a finite number
   * (each named with its value in `fields`); it was repaired (due now, received now, no attempts) and
   * queued. For the log: such a value is a bug upstream.
   */
  onInvalidUnit?: (unit: Unit, fields: string[]) => void;
}

export interface GroupLimits {
  maxConnections?: number;
  messagesPerMinute?: number;
  messagesPerHour?: number;
}

/**
 * A rate as a token bucket that holds ten seconds' worth: sending is smooth rather than a
 * whole minute's (or hour's) allowance in the first second.
 */
class Bucket {
  private tokens: number;
  private at: number;
  constructor(
    private readonly perMs: number,
    private readonly capacity: number,
    now: number,
  ) {
    this.tokens = capacity;
    this.at = now;
  }
  static of(limit: number | undefined, windowMs: number, now: number): Bucket | undefined {
    return limit === undefined ? undefined : new Bucket(limit / windowMs, Math.max(1, Math.floor((limit * 10_000) / windowMs)), now);
  }
  private refill(now: number): void {
    this.tokens = Math.min(this.capacity, this.tokens + Math.max(0, now - this.at) * this.perMs);
    this.at = now;
  }
  /** When one token is there (now or later). */
  availableAt(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? now : now + Math.ceil((1 - this.tokens) / this.perMs);
  }
  take(now: number): void {
    this.refill(now);
    this.tokens -= 1;
  }
}

interface Group {
  connections: number;
  minute?: Bucket;
  hour?: Bucket;
  pausedUntil: number;
  /** The limits the buckets were made for (a reload may change them). */
  limitsKey: string;
}

export type FailureDecision = { kind: 'retry'; at: number } | { kind: 'expired' };

interface Destination {
  ready: Unit[];
  connections: number;
  /**
   * How many of its open connections each group counts (a destination's group can change while
   * a connection is open: a reclassification, a reload). Each close takes one back from a group
   * that counts one, so every group's count returns to what it was once they are all closed.
   */
  openIn?: Map<string, number>;
}

export interface QueueStats {
  ready: number;
  deferred: number;
  inflight: number;
  /** Seconds the oldest ready unit has been due, 0 when none is. */
  oldestReadySeconds: number;
  /**
   * Seconds past its due time of the most overdue deferred unit, 0 when none is: a deferred
   * unit is made ready when its time comes (tick), so more than a moment means retries stopped.
   */
  overdueSeconds: number;
}

export class Scheduler {
  private readonly destinations = new Map<string, Destination>();
  /** Deferred units ordered by dueAt (a binary heap). */
  private readonly deferred: Unit[] = [];
  private readonly inflight = new Set<string>();
  private readonly groups = new Map<string, Group>();
  private totalConnections = 0;
  private readyCount = 0;

  constructor(private options: SchedulerOptions) {}

  /** Applies new limits (config reload); units keep their timing. */
  reconfigure(options: SchedulerOptions): void {
    this.options = options;
  }

  /**
   * Adds a unit: ready if due, else deferred. A time that is not a finite number is repaired
   * first (see onInvalidUnit): NaN compares false with everything, so at the root of the
   * deferred heap it would hold back every unit behind it forever.
   */
  add(unit: Unit, now: number): void {
    if (!Number.isFinite(now)) throw new RangeError(`scheduler: now is ${now}, not a time`);
    this.repair(unit, now);
    if (unit.dueAt <= now) this.pushReady(unit);
    else heapPush(this.deferred, unit);
  }

  /** Moves units whose time has come from deferred to ready. */
  tick(now: number): void {
    while (this.deferred.length && this.deferred[0]!.dueAt <= now) this.pushReady(heapPop(this.deferred)!);
  }

  /** When the next deferred unit becomes due, or a held-back provider may send again: for the caller's timer. */
  nextDueAt(now: number): number | undefined {
    let next = this.deferred[0]?.dueAt;
    for (const [name, dest] of this.destinations) {
      if (!dest.ready.length) continue;
      const group = this.groupName(name);
      const at = group === undefined ? undefined : this.groupBlockedUntil(group, now);
      if (at !== undefined && at > now && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  /**
   * A destination that should get one more connection now: it has more ready units than
   * open connections, and neither its limit, its provider's limits nor the total limit is
   * reached. The caller opens the connection; the count is taken here.
   */
  openConnection(now: number): string | undefined {
    if (this.totalConnections >= this.options.maxConnections) return undefined;
    let best: { name: string; dest: Destination; group: string } | undefined;
    for (const [name, dest] of this.destinations) {
      if (dest.ready.length <= dest.connections || dest.connections >= this.options.maxConnectionsPerDestination) continue;
      const group = this.groupName(name);
      if (group === undefined || this.groupBlockedUntil(group, now) > now) continue;
      const limit = this.options.groupLimits?.(group)?.maxConnections;
      if (limit !== undefined && (this.groups.get(group)?.connections ?? 0) >= limit) continue;
      // Oldest head first, so one busy destination does not starve the others.
      if (!best || dest.ready[0]!.dueAt < best.dest.ready[0]!.dueAt) best = { name, dest, group };
    }
    if (!best) return undefined;
    best.dest.connections++;
    const openIn = (best.dest.openIn ??= new Map());
    openIn.set(best.group, (openIn.get(best.group) ?? 0) + 1);
    this.group(best.group, now).connections++;
    this.totalConnections++;
    return best.name;
  }

  closeConnection(destination: string, now: number): void {
    const dest = this.destinations.get(destination);
    if (!dest) return;
    dest.connections--;
    this.totalConnections--;
    let counted: string | undefined;
    for (const name of dest.openIn?.keys() ?? []) counted = name;
    if (counted !== undefined) {
      const left = dest.openIn!.get(counted)! - 1;
      if (left > 0) dest.openIn!.set(counted, left);
      else dest.openIn!.delete(counted);
      const group = this.groups.get(counted);
      if (group) group.connections--;
    }
    this.forgetIfIdle(destination, dest);
    if (counted !== undefined) this.forgetGroupIfIdle(counted, now);
  }

  /**
   * Pauses every destination of a provider until `until` (it said it is throttling us).
   * Units stay queued; connections open now take nothing more.
   */
  pauseGroup(group: string, until: number, now: number): void {
    if (!Number.isFinite(until)) return;
    const g = this.group(group, now);
    g.pausedUntil = Math.max(g.pausedUntil, until);
  }

  /** Destinations with ready units whose provider is not known yet. */
  unclassified(): string[] {
    if (!this.options.groupOf) return [];
    return [...this.destinations].filter(([name, d]) => d.ready.length && this.options.groupOf!(name) === undefined).map(([name]) => name);
  }

  /** Ready units of a destination that its provider lets go now. */
  readyFor(destination: string, now: number): number {
    const group = this.groupName(destination);
    if (group === undefined || this.groupBlockedUntil(group, now) > now) return 0;
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

  /** The next ready unit for a connection to this destination, now in flight, if its provider lets it go now. */
  take(destination: string, now: number): Unit | undefined {
    const dest = this.destinations.get(destination);
    if (!dest?.ready.length) return undefined;
    const group = this.groupName(destination);
    if (group === undefined || this.groupBlockedUntil(group, now) > now) return undefined;
    const g = this.groups.get(group);
    g?.minute?.take(now);
    g?.hour?.take(now);
    const unit = dest.ready.shift()!;
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

  /**
   * Units held back by their provider (paused or at its rate) count as deferred, not ready:
   * they are not due, and more relays would not make them go faster.
   */
  stats(now: number): QueueStats {
    let oldest = Infinity;
    let held = 0;
    for (const [name, dest] of this.destinations) {
      const group = this.groupName(name);
      if (group !== undefined && this.groupBlockedUntil(group, now) > now) {
        held += dest.ready.length;
        continue;
      }
      for (const u of dest.ready) if (u.dueAt < oldest) oldest = u.dueAt;
    }
    // Every deferred unit, not only the heap's root: this must show a heap that went wrong too.
    let overdueSince = now;
    for (const u of this.deferred) if (u.dueAt < overdueSince) overdueSince = u.dueAt;
    return {
      ready: this.readyCount - held,
      deferred: this.deferred.length + held,
      inflight: this.inflight.size,
      oldestReadySeconds: oldest === Infinity ? 0 : Math.max(0, (now - oldest) / 1000),
      overdueSeconds: (now - overdueSince) / 1000,
    };
  }

  private repair(unit: Unit, now: number): void {
    const fields: string[] = [];
    if (!Number.isFinite(unit.dueAt)) {
      fields.push(`dueAt=${unit.dueAt}`);
      unit.dueAt = now;
    }
    if (!Number.isFinite(unit.receivedAt)) {
      fields.push(`receivedAt=${unit.receivedAt}`);
      unit.receivedAt = now;
    }
    if (!Number.isSafeInteger(unit.attempts) || unit.attempts < 0) {
      fields.push(`attempts=${unit.attempts}`);
      unit.attempts = 0;
    }
    if (fields.length) this.options.onInvalidUnit?.(unit, fields);
  }

  private groupName(destination: string): string | undefined {
    return this.options.groupOf ? this.options.groupOf(destination) : destination;
  }

  /** The provider's state, with rate buckets matching its current limits. */
  private group(name: string, now: number): Group {
    const limits = this.options.groupLimits?.(name);
    const limitsKey = `${limits?.messagesPerMinute}/${limits?.messagesPerHour}`;
    let g = this.groups.get(name);
    if (!g || g.limitsKey !== limitsKey) {
      g = { connections: g?.connections ?? 0, pausedUntil: g?.pausedUntil ?? 0, limitsKey, minute: Bucket.of(limits?.messagesPerMinute, 60_000, now), hour: Bucket.of(limits?.messagesPerHour, 3_600_000, now) };
      this.groups.set(name, g);
    }
    return g;
  }

  /** A group without limits keeps no state once idle: destinations come and go by the thousand. */
  private forgetGroupIfIdle(name: string, now: number): void {
    const g = this.groups.get(name);
    if (g && g.connections === 0 && g.pausedUntil <= now && !g.minute && !g.hour) this.groups.delete(name);
  }

  /** When the provider may take its next message: now, or a later time (paused, or at its rate). */
  private groupBlockedUntil(name: string, now: number): number {
    if (!this.groups.has(name) && !this.options.groupLimits?.(name)) return now;
    const g = this.group(name, now);
    return Math.max(now, g.pausedUntil, g.minute?.availableAt(now) ?? now, g.hour?.availableAt(now) ?? now);
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
