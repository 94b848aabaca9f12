/**
 * Leader election on a coordination.k8s.io Lease, after client-go's: the leader renews the
 * lease every retry period; another replica takes over only once the lease has not been
 * renewed for its whole duration. Every write carries the resourceVersion it read, so two
 * replicas racing for an expired lease cannot both win (one gets 409 Conflict).
 *
 * A leader that cannot renew within renewDeadline stops leading at once (its controllers stop)
 * before anyone else may take over (renewDeadline < leaseDuration): two replicas never act
 * together.
 */
/**
 * metav1.MicroTime as the API server parses it: RFC 3339 with exactly six fractional digits
 * (Go's layout 2006-01-02T15:04:05.000000Z07:00). toISOString's three digits are refused (400).
 */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

export interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: LeaseSpec;
}

/** The API calls the election needs; writes reject with an error whose `code` is 409 on a conflict. */
export interface LeaseClient {
  get(namespace: string, name: string): Promise<Lease | undefined>;
  create(lease: Lease): Promise<Lease>;
  replace(lease: Lease): Promise<Lease>;
}

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  now?: () => number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  onError?: (err: unknown) => void;
}

export class LeaderElector {
  private leading = false;
  private lastRenew = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly now: () => number;

  constructor(
    private readonly client: LeaseClient,
    private readonly options: LeaderElectionOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    void this.loop();
    // A watchdog apart from the requests: a renew that hangs must not keep this replica leading
    // past the deadline, after which another may take the lease.
    this.watchdog = setInterval(() => {
      if (this.leading && this.now() - this.lastRenew >= this.options.renewDeadlineMs) this.setLeading(false);
    }, Math.min(this.options.retryPeriodMs, 500));
    this.watchdog.unref();
  }

  private watchdog: NodeJS.Timeout | undefined;

  /** Stops; a leader gives the lease up so a standby takes over without waiting for it to expire. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    if (!this.leading) return;
    this.setLeading(false);
    try {
      const lease = await this.client.get(this.options.namespace, this.options.name);
      if (lease?.spec.holderIdentity === this.options.identity) {
        await this.client.replace({ ...lease, spec: { ...lease.spec, holderIdentity: null, renewTime: null, leaseDurationSeconds: 1 } });
      }
    } catch (err) {
      this.options.onError?.(err);
    }
  }

  /** One attempt to acquire or renew; true when this replica holds the lease afterwards. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.options;
    const now = microTime(this.now());
    const durationSeconds = Math.ceil(this.options.leaseDurationMs / 1000);
    const existing = await this.client.get(namespace, name);
    if (!existing) {
      await this.client.create({
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace },
        spec: { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
      });
      return true;
    }
    const spec = existing.spec;
    const mine = spec.holderIdentity === identity;
    const renewedAt = spec.renewTime ? Date.parse(spec.renewTime) : 0;
    const expired = !spec.holderIdentity || renewedAt + (spec.leaseDurationSeconds ?? durationSeconds) * 1000 <= this.now();
    if (!mine && !expired) return false;
    await this.client.replace({
      ...existing,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        renewTime: now,
        acquireTime: mine ? spec.acquireTime : now,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
      },
    });
    return true;
  }

  private async loop(): Promise<void> {
    if (this.stopped) return;
    let held = false;
    const attemptAt = this.now();
    try {
      held = await this.tryAcquireOrRenew();
    } catch (err) {
      // A conflict means another replica wrote first: not ours this round.
      if ((err as { code?: number }).code !== 409) this.options.onError?.(err);
    }
    if (this.stopped) return;
    // The lease counts from when the renew was sent, not from when its answer came.
    if (held) this.lastRenew = attemptAt;
    if (held && !this.leading) this.setLeading(true);
    // A leader that has not renewed within the deadline must stop before the lease can expire.
    if (!held && this.leading && this.now() - this.lastRenew >= this.options.renewDeadlineMs) this.setLeading(false);
    if (!held && this.leading && (await this.heldByOther())) this.setLeading(false);
    if (!this.stopped) this.timer = setTimeout(() => void this.loop(), this.options.retryPeriodMs);
  }

  private async heldByOther(): Promise<boolean> {
    try {
      const lease = await this.client.get(this.options.namespace, this.options.name);
      return !!lease?.spec.holderIdentity && lease.spec.holderIdentity !== this.options.identity;
    } catch {
      return false;
    }
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    if (leading) this.options.onStartedLeading();
    else this.options.onStoppedLeading();
  }
}
