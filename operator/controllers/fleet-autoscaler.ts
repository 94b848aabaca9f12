/**
 * The autoscaler's loop: for each MailRelay, every interval, scrape its ready pods' /metrics
 * (the queue summary in status comes from them); with autoscaling on, decide (../policy/autoscale.ts, the HPA's rules), and when replicas change,
 * record the decision in status (the MailRelay controller then scales the Deployment), emit
 * an Event and count it. It also marks each pod's deletion cost from the mail it holds, so a
 * scale-down takes the emptiest pods first and hands over the least.
 *
 * Status is written when replicas change, and otherwise at most every few intervals (the
 * stabilisation window survives an operator restart, nearly whole): steady state stays quiet.
 * The same scrape gives the SmarthostAuthenticated condition, written as soon as it changes.
 */
import type { Logger } from 'pino';
import { duration } from '../../relay/config.js';
import { mailRelaySpecSchema, type Condition, type MailRelay } from '../api/v1alpha1.js';
import { KubeError, type AnyObject, type KubeClient } from '../kube/client.js';
import type { OperatorMetrics } from '../metrics.js';
import { relayLabels } from '../render/mailrelay.js';
import { decide, restoreState, type AutoscalerState, type PodSample } from '../policy/autoscale.js';
import { SMARTHOST_AUTHENTICATED, authenticatesToSmarthost, smarthostAuthCondition, type SmarthostAuthCondition } from '../policy/smarthost-auth.js';
import { conditionOf, setCondition } from './conditions.js';
import type { EventSink } from './events.js';
import { scrapeSignals, type RelaySignals } from './relay-metrics.js';

export const DELETION_COST = 'controller.kubernetes.io/pod-deletion-cost';
const sum = (values: number[]) => values.reduce((n, v) => n + v, 0);
const SCRAPE_TIMEOUT_MS = 5000;
/** Without a change of replicas, the state is written at most this often. */
const STATE_WRITE_MS = 60_000;

export interface FleetAutoscalerContext {
  client: KubeClient;
  events: EventSink;
  log: Logger;
  now: () => Date;
  metrics?: OperatorMetrics;
  relays: () => MailRelay[];
  /** The relay pods in a namespace (the Pod informer's cache). */
  pods: (namespace: string) => AnyObject[];
  deployment: (namespace: string, name: string) => AnyObject | undefined;
  scrape?: (url: string, timeoutMs: number) => Promise<RelaySignals | undefined>;
}

interface Memory {
  state: AutoscalerState;
  nextAt: number;
  writtenAt: number;
  /** The SmarthostAuthenticated condition last written: a Warning Event only when it turns False (or to another reason). */
  auth?: { status: string; reason: string } | undefined;
}

type Pod = AnyObject & { spec?: { containers?: { ports?: { name?: string; containerPort: number }[] }[] }; status?: { podIP?: string; conditions?: { type: string; status: string }[] } };

export class FleetAutoscaler {
  private readonly memory = new Map<string, Memory>();
  private running = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ctx: FleetAutoscalerContext) {}

  /** Looks every second for relays whose interval has passed. */
  start(): void {
    this.timer = setInterval(() => void this.tick(), 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async tick(): Promise<void> {
    const now = this.ctx.now().getTime();
    await Promise.all(
      this.ctx.relays().map(async (relay) => {
        const uid = relay.metadata.uid ?? `${relay.metadata.namespace}/${relay.metadata.name}`;
        if (!relay.spec.autoscaling || this.running.has(uid)) return;
        const memory = this.memory.get(uid);
        if (memory && now < memory.nextAt) return;
        this.running.add(uid);
        try {
          await this.run(relay, uid);
        } catch (err) {
          this.ctx.log.warn({ err: (err as Error).message, mailrelay: `${relay.metadata.namespace}/${relay.metadata.name}` }, 'autoscaler: decision failed; trying again next interval');
        } finally {
          this.running.delete(uid);
        }
      }),
    );
  }

  private async run(relay: MailRelay, uid: string): Promise<void> {
    const now = this.ctx.now();
    const namespace = relay.metadata.namespace ?? 'default';
    const name = relay.metadata.name;
    const spec = relay.spec.autoscaling;
    const instance = relayLabels(relay)['app.kubernetes.io/instance'];
    const pods = (this.ctx.pods(namespace) as Pod[]).filter((p) => p.metadata.labels?.['app.kubernetes.io/instance'] === instance && p.metadata.labels?.['app.kubernetes.io/name'] === 'mailfleet-relay' && !p.metadata.deletionTimestamp);
    const scrape = this.ctx.scrape ?? scrapeSignals;
    const samples: (PodSample & { object: Pod })[] = await Promise.all(
      pods.map(async (p) => {
        const ready = p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
        const port = p.spec?.containers?.flatMap((c) => c.ports ?? []).find((x) => x.name === 'metrics')?.containerPort ?? 9090;
        const ip = p.status?.podIP;
        const metrics = ready && ip ? await scrape(`http://${ip.includes(':') ? `[${ip}]` : ip}:${port}/metrics`, SCRAPE_TIMEOUT_MS) : undefined;
        return { pod: p.metadata.name, ready, metrics, object: p };
      }),
    );
    await this.markDeletionCosts(samples);

    const memory = this.memory.get(uid) ?? { state: restoreState(relay.status?.autoscaler?.state), nextAt: 0, writtenAt: 0 };
    await this.smarthostAuth(relay, samples, memory);
    // The queue over the fleet, for status (kubectl's Queue column): written at most every minute.
    const answered = samples.filter((x) => x.metrics);
    const queue = { ready: sum(answered.map((x) => x.metrics!.ready)), deferred: 0, inflight: 0 };
    queue.deferred = sum(answered.map((x) => x.metrics!.queued)) - queue.ready;
    const queueSummary = answered.length ? `${queue.ready} due, ${queue.deferred} waiting` : 'no metrics';
    if (!spec.enabled) {
      memory.nextAt = now.getTime() + duration.parse(spec.interval) * 1000;
      this.memory.set(uid, memory);
      if (answered.length && queueSummary !== relay.status?.queueSummary && now.getTime() - memory.writtenAt >= STATE_WRITE_MS) {
        await this.ctx.client.patchStatus({ apiVersion: relay.apiVersion, kind: relay.kind, namespace, name }, { queue, queueSummary });
        memory.writtenAt = now.getTime();
      }
      return;
    }
    const current = Number((this.ctx.deployment(namespace, name)?.spec as { replicas?: number } | undefined)?.replicas ?? relay.status?.autoscaler?.desiredReplicas ?? spec.minReplicas);
    const decision = decide({ spec, currentReplicas: current, pods: samples, now, state: memory.state });
    memory.state = decision.state;
    memory.nextAt = now.getTime() + duration.parse(spec.interval) * 1000;
    this.memory.set(uid, memory);
    this.ctx.metrics?.autoscalerDesiredReplicas.set({ namespace, name }, decision.desired);

    const changed = decision.desired !== current;
    if (!changed && now.getTime() - memory.writtenAt < STATE_WRITE_MS) return;
    const autoscaler = { desiredReplicas: decision.desired, lastDecision: decision.reason, state: decision.state as unknown as Record<string, unknown> };
    const lastScale = changed ? { time: now.toISOString(), from: current, to: decision.desired, reason: decision.reason } : relay.status?.lastScale;
    await this.ctx.client.patchStatus({ apiVersion: relay.apiVersion, kind: relay.kind, namespace, name }, { autoscaler, queue, queueSummary, ...(lastScale ? { lastScale } : {}) });
    memory.writtenAt = now.getTime();
    if (changed) {
      const direction = decision.desired > current ? 'up' : 'down';
      this.ctx.metrics?.scalingDecisions.inc({ namespace, name, direction });
      this.ctx.events.emit(relay as never, 'Normal', direction === 'up' ? 'ScaledUp' : 'ScaledDown', decision.reason);
      this.ctx.log.info({ event: 'scaled', mailrelay: `${namespace}/${name}`, from: current, to: decision.desired, limitedBy: decision.limitedBy, inputs: decision.inputs }, decision.reason);
    }
  }

  /**
   * SmarthostAuthenticated from the pods' samples (../policy/smarthost-auth.ts), written at once
   * when it differs from status (not held to the state's write interval), with a Warning Event
   * when it turns False; removed when the relay no longer authenticates to a smarthost. Status
   * conditions are one list that a merge patch replaces whole, and the MailRelay controller
   * writes the others: the patch carries the resourceVersion it was computed from, so it never
   * writes back a stale list (a 409 is tried again next interval).
   */
  private async smarthostAuth(relay: MailRelay, samples: { metrics?: RelaySignals | undefined }[], memory: Memory): Promise<void> {
    const parsed = mailRelaySpecSchema.safeParse(relay.spec);
    if (!parsed.success) return;
    const was = conditionOf(relay.status?.conditions, SMARTHOST_AUTHENTICATED);
    let conditions: Condition[] | undefined;
    let next: SmarthostAuthCondition | undefined;
    if (!authenticatesToSmarthost(parsed.data)) {
      memory.auth = undefined;
      if (!was) return;
      conditions = (relay.status?.conditions ?? []).filter((c) => c.type !== SMARTHOST_AUTHENTICATED);
    } else {
      next = smarthostAuthCondition(samples.map((x) => x.metrics?.smarthostAuth));
      if (!next || (was && was.status === next.status && was.reason === next.reason && was.message === next.message && was.observedGeneration === relay.metadata.generation)) return;
      conditions = setCondition(relay.status?.conditions, { type: SMARTHOST_AUTHENTICATED, ...next, observedGeneration: relay.metadata.generation }, this.ctx.now());
    }
    const namespace = relay.metadata.namespace ?? 'default';
    try {
      await this.ctx.client.patchStatus({ apiVersion: relay.apiVersion, kind: relay.kind, namespace, name: relay.metadata.name }, { conditions }, relay.metadata.resourceVersion);
    } catch (err) {
      if (err instanceof KubeError && err.code === 409) return;
      throw err;
    }
    const before = memory.auth ?? was;
    memory.auth = next && { status: next.status, reason: next.reason };
    if (next?.status === 'False' && (before?.status !== 'False' || before.reason !== next.reason)) this.ctx.events.emit(relay as never, 'Warning', next.reason, next.message);
    if (next) this.ctx.log.info({ event: 'smarthost-auth', mailrelay: `${namespace}/${relay.metadata.name}`, status: next.status, reason: next.reason }, next.message);
  }

  /**
   * The ReplicaSet controller removes pods with the lowest deletion cost first: the pods that
   * hold the least mail go, and the handoff has the least to move. Costs are rounded to powers
   * of two, so a queue that moves a little does not patch the pod every interval.
   */
  private async markDeletionCosts(samples: { metrics?: RelaySignals | undefined; object: Pod }[]): Promise<void> {
    await Promise.all(
      samples.map(async ({ metrics, object }) => {
        if (!metrics) return;
        const cost = String(metrics.queued <= 0 ? 0 : 2 ** Math.floor(Math.log2(metrics.queued)));
        if (object.metadata.annotations?.[DELETION_COST] === cost) return;
        await this.ctx.client.patch({ apiVersion: 'v1', kind: 'Pod', namespace: object.metadata.namespace, name: object.metadata.name }, { metadata: { annotations: { [DELETION_COST]: cost } } }).catch((err: Error) => {
          this.ctx.log.warn({ err: err.message, pod: object.metadata.name }, 'could not set the pod deletion cost');
        });
      }),
    );
  }
}
