/**
 * The autoscaler's decision, pure and driven by the clock: from what the relay pods' /metrics
 * say, how many relays a MailRelay should run. It follows the Kubernetes HPA v2 controller
 * (pkg/controller/podautoscaler: replica_calculator.go for each metric, horizontal.go for
 * stabilisation, rate policies and min/max) with its defaults, so a user who knows the HPA
 * can predict it:
 *
 *   each signal -> a proposed count      ratio to target, tolerance 0.1, missing and
 *                                        unready pods as the HPA counts them
 *   the largest proposal                 the signal that needs most pods decides
 *   scale-down stabilisation             the highest proposal of the window (300 s)
 *   scale-up rate                        at most double or +4 pods per 15 s, whichever is more
 *   min and max                          last
 *
 * The three signals, each against its target in spec.autoscaling.targets:
 *
 *   readyMessagesPerReplica  messages due now, averaged over the pods that answered (an HPA
 *                            "Pods" metric): proposes ceil(sum / target) pods
 *   oldestReadySeconds       the oldest due message's age, the largest over the pods (an HPA
 *                            "Object" metric with a Value target): proposes
 *                            ceil(age / target * ready pods)
 *   sessionsPerReplica       open SMTP sessions, like readyMessagesPerReplica
 *
 * Deferred messages are in none of them: more pods do not make a throttling provider faster
 * or a retry time come sooner.
 *
 * What the HPA keeps in memory (past proposals, past scale events) is carried in a small
 * state that the controller stores in the MailRelay's status, so a restarted operator
 * decides as the old one would have.
 */
import { z } from 'zod';
import { duration } from '../../relay/config.js';
import type { MailRelaySpec } from '../api/v1alpha1.js';
import type { RelaySignals } from '../controllers/relay-metrics.js';

export type AutoscalingSpec = MailRelaySpec['autoscaling'];

/** One relay pod of the fleet, not being deleted (the HPA leaves terminating pods out). */
export interface PodSample {
  pod: string;
  /** The pod's Ready condition. Unready pods are not scraped. */
  ready: boolean;
  /** Undefined when the pod's /metrics did not answer (or the pod is not ready). */
  metrics?: RelaySignals | undefined;
}

export type Signal = keyof AutoscalingSpec['targets'];

export interface SignalInput {
  /** What was measured, in the target's unit (rounded to 2 decimals). */
  value: number;
  target: number;
  /** value / target (rounded to 2 decimals). */
  ratio: number;
  /** Replicas this signal asks for. */
  proposed: number;
}

export type LimitedBy = 'rate' | 'stabilisation' | 'min' | 'max' | 'tolerance' | 'missing-metrics';

/** What the HPA keeps in memory between decisions; small JSON, for the MailRelay's status. */
export interface AutoscalerState {
  /** Proposals within the stabilisation window that can still be its highest, oldest first. */
  recommendations: { time: string; replicas: number }[];
  /** Replica changes within the rate policies' period (positive: up). */
  scaleEvents: { time: string; change: number }[];
}

export interface DecideInput {
  spec: AutoscalingSpec;
  currentReplicas: number;
  pods: readonly PodSample[];
  now: Date;
  state: AutoscalerState;
}

export interface Decision {
  desired: number;
  /** A sentence for the Event and the status: the signal that decided, its value against its target. */
  reason: string;
  /** Per signal; empty when no pod answered. */
  inputs: Partial<Record<Signal, SignalInput>>;
  /** What held the count away from the deciding signal's own proposal, if anything. */
  limitedBy?: LimitedBy;
  /** The state to store; it assumes `desired` is applied (keep the old one if applying fails). */
  state: AutoscalerState;
  nextDecisionAt: Date;
}

// The HPA's defaults: --horizontal-pod-autoscaler-tolerance, and behavior.scaleUp's policies
// (selectPolicy Max of Percent 100 and Pods 4, periodSeconds 15). Its default scale-down
// policy (Percent 100 per 15 s) may remove every pod at once, so only minReplicas bounds a
// scale-down here.
const TOLERANCE = 0.1;
const SCALE_UP_PERIOD_MS = 15_000;
const SCALE_UP_PERCENT = 100;
const SCALE_UP_PODS = 4;

const LABELS: Record<Signal, { name: string; unit: string }> = {
  readyMessagesPerReplica: { name: 'messages due now per replica', unit: '' },
  oldestReadySeconds: { name: "the oldest due message's age", unit: ' s' },
  sessionsPerReplica: { name: 'open SMTP sessions per replica', unit: '' },
};

const stateSchema = z.object({
  recommendations: z.array(z.object({ time: z.string(), replicas: z.number().int().min(0) })).default([]),
  scaleEvents: z.array(z.object({ time: z.string(), change: z.number().int() })).default([]),
});

/** The state read back from status; anything unreadable starts afresh (as a restarted HPA does). */
export function restoreState(json: unknown): AutoscalerState {
  const parsed = stateSchema.safeParse(json ?? {});
  return parsed.success ? parsed.data : { recommendations: [], scaleEvents: [] };
}

const seconds = (d: string) => duration.parse(d);
const round = (n: number) => Math.round(n * 100) / 100;
// The HPA compares |1 - ratio| <= tolerance; the epsilon keeps 550/500 inside despite float rounding.
const withinTolerance = (ratio: number) => Math.abs(1 - ratio) <= TOLERANCE + 1e-9;

interface Fleet {
  /** Signals of the ready pods that answered. */
  measured: RelaySignals[];
  /** Ready pods whose /metrics did not answer. */
  missing: number;
  /** Pods not ready (starting): the HPA's "unready pods". */
  unready: number;
}

interface Proposal {
  signal: Signal;
  input: SignalInput;
  /** Why the signal proposes the current count although its ratio is not 1. */
  held?: 'tolerance' | 'missing-metrics';
  /** The value once pods without metrics are counted as the HPA counts them, when there were any. */
  counted?: { value: number; as: 'idle' | 'at target' };
}

function group(pods: readonly PodSample[]): Fleet {
  const fleet: Fleet = { measured: [], missing: 0, unready: 0 };
  for (const p of pods) {
    if (!p.ready) fleet.unready++;
    else if (p.metrics) fleet.measured.push(p.metrics);
    else fleet.missing++;
  }
  return fleet;
}

/**
 * The proposal for a ratio, with the HPA's guards (calcPlainMetricReplicas): the current
 * count within the tolerance, and the current count when the proposal points the other way
 * than the ratio (a signal above its target never asks for fewer pods than now, nor one below
 * it for more), which counting fewer pods than replicas could otherwise do.
 */
function fromRatio(signal: Signal, input: Omit<SignalInput, 'proposed'>, ratio: number, pods: number, current: number, counted?: Proposal['counted']): Proposal {
  const keep = (held: Proposal['held']): Proposal => ({ signal, input: { ...input, proposed: current }, held, ...(counted ? { counted } : {}) });
  if (withinTolerance(ratio)) return keep('tolerance');
  const proposed = Math.ceil(ratio * pods);
  if ((ratio > 1 && proposed < current) || (ratio < 1 && proposed > current)) return keep('missing-metrics');
  return { signal, input: { ...input, proposed }, ...(counted ? { counted } : {}) };
}

/**
 * A per-replica signal, as the HPA's calcPlainMetricReplicas: the ratio is the average over
 * the pods that answered. With pods missing or starting, the HPA counts missing pods at the
 * target on the way down and at 0 on the way up, starting pods at 0 on the way up (they will
 * take load), computes the ratio again over all of them, and keeps the current count if that
 * ratio is within the tolerance or now points the other way. The proposal comes to
 * ceil(sum / target), plus the missing pods on the way down.
 */
function perReplica(signal: Signal, values: number[], target: number, fleet: Fleet, current: number): Proposal {
  const sum = values.reduce((a, b) => a + b, 0);
  const ratio = sum / values.length / target;
  const input = { value: round(sum / values.length), target, ratio: round(ratio) };
  const scaleUp = ratio > 1;
  const countUnready = scaleUp && fleet.unready > 0;
  if (withinTolerance(ratio) || (!fleet.missing && !countUnready)) return fromRatio(signal, input, ratio, values.length, current);

  const pods = values.length + fleet.missing + (countUnready ? fleet.unready : 0);
  const countedRatio = (sum + (scaleUp ? 0 : fleet.missing * target)) / pods / target;
  const counted = { value: round(countedRatio * target), as: scaleUp ? 'idle' : 'at target' } as const;
  if (countedRatio > 1 !== scaleUp && !withinTolerance(countedRatio)) return { signal, input: { ...input, proposed: current }, held: 'missing-metrics', counted };
  return fromRatio(signal, input, countedRatio, pods, current, counted);
}

/**
 * The fleet-wide age, as the HPA's object metric with a Value target
 * (getUsageRatioReplicaCount): ceil(ratio * ready pods). On the way up a pod that did not
 * answer is taken at 0, which leaves the largest age as measured. On the way down it is
 * taken at the target, as the HPA takes missing pods: a pod that needs itself, so the
 * proposal is ceil(ratio * answering pods + missing pods).
 */
function fleetWide(signal: Signal, value: number, target: number, fleet: Fleet, current: number): Proposal {
  const ratio = value / target;
  const input = { value: round(value), target, ratio: round(ratio) };
  const pods = fleet.measured.length + fleet.missing;
  if (withinTolerance(ratio) || ratio > 1 || !fleet.missing) return fromRatio(signal, input, ratio, pods, current);
  const countedRatio = (ratio * fleet.measured.length + fleet.missing) / pods;
  return fromRatio(signal, input, countedRatio, pods, current, { value: round(countedRatio * target), as: 'at target' });
}

function propose(targets: AutoscalingSpec['targets'], fleet: Fleet, current: number): Proposal[] {
  const m = fleet.measured;
  return [
    perReplica('readyMessagesPerReplica', m.map((s) => s.ready), targets.readyMessagesPerReplica, fleet, current),
    fleetWide('oldestReadySeconds', Math.max(...m.map((s) => s.oldestReadySeconds)), targets.oldestReadySeconds, fleet, current),
    perReplica('sessionsPerReplica', m.map((s) => s.sessions), targets.sessionsPerReplica, fleet, current),
  ];
}

/** Drops what no longer matters at `now`: proposals older than the window, scale events older than the rate period. */
function prune(state: AutoscalerState, now: number, windowMs: number): AutoscalerState {
  return {
    recommendations: state.recommendations.filter((r) => Date.parse(r.time) > now - windowMs),
    scaleEvents: state.scaleEvents.filter((e) => Date.parse(e.time) > now - SCALE_UP_PERIOD_MS),
  };
}

/**
 * Adds a proposal. Older proposals not above it can never be the window's highest again
 * (this one outlives them), so they go: the list stays short whatever the interval.
 */
function recordProposal(state: AutoscalerState, now: Date, replicas: number): AutoscalerState {
  const kept = state.recommendations.filter((r) => r.replicas > replicas);
  return { ...state, recommendations: [...kept, { time: now.toISOString(), replicas }] };
}

/** The HPA's calculateScaleUpLimitWithScalingRules for the default policies, selectPolicy Max. */
function scaleUpLimit(state: AutoscalerState, current: number): number {
  const added = state.scaleEvents.reduce((n, e) => n + Math.max(0, e.change), 0);
  const removed = state.scaleEvents.reduce((n, e) => n + Math.max(0, -e.change), 0);
  const periodStart = current - added + removed;
  const limit = Math.max(Math.ceil(periodStart * (1 + SCALE_UP_PERCENT / 100)), periodStart + SCALE_UP_PODS);
  // Pods added this period already used it up: no more until it ends.
  return Math.max(limit, current);
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(1));

/** The pods without numbers, for a reason; starting pods only where they were counted. */
function withoutMetrics(fleet: Fleet, current: number, unready = true): string {
  const parts = [fleet.missing ? `${fleet.missing} ready pod(s) that did not answer /metrics` : '', unready && fleet.unready ? `${fleet.unready} pod(s) not ready` : ''].filter(Boolean);
  return parts.length ? parts.join(' and ') : `${current - fleet.measured.length} replica(s) without a pod yet`;
}

/** The deciding signal in words: its value against its target, and what that asks for. */
function describe(p: Proposal, fleet: Fleet, current: number): string {
  const { name, unit } = LABELS[p.signal];
  const measured = `${name} ${fmt(p.input.value)}${unit} vs target ${p.input.target}${unit}`;
  const counted = p.counted ? ` (${fmt(p.counted.value)}${unit} counting the ${withoutMetrics(fleet, current, p.counted.as === 'idle')} as ${p.counted.as}, as the HPA does)` : '';
  if (p.held === 'tolerance') return `${measured}${counted} is within the ${TOLERANCE * 100}% tolerance`;
  if (p.held === 'missing-metrics') return counted ? `${measured}${counted}, which points the other way` : `${measured}, but only ${fleet.measured.length} of ${current} replicas answered`;
  return `${measured}${counted} asks for ${p.input.proposed}`;
}

export function decide(input: DecideInput): Decision {
  const { spec, currentReplicas: current, now } = input;
  const { minReplicas: min, maxReplicas: max } = spec;
  const windowSeconds = seconds(spec.scaleDownStabilization);
  const nextDecisionAt = new Date(now.getTime() + seconds(spec.interval) * 1000);
  const fleet = group(input.pods);
  const proposals = fleet.measured.length ? propose(spec.targets, fleet, current) : [];
  const inputs = Object.fromEntries(proposals.map((p) => [p.signal, p.input])) as Decision['inputs'];
  let state = prune(input.state, now.getTime(), windowSeconds * 1000);

  const finish = (desired: number, limitedBy: LimitedBy | undefined, reason: string): Decision => {
    if (desired !== current) state = { ...state, scaleEvents: [...state.scaleEvents, { time: now.toISOString(), change: desired - current }] };
    return { desired, reason, inputs, ...(limitedBy ? { limitedBy } : {}), state, nextDecisionAt };
  };

  // As the HPA: a count outside [min, max] (a changed spec, a new fleet at 0) is brought into
  // range first, whatever the metrics say, and leaves no proposal behind.
  if (current > max) return finish(max, 'max', `Scaling down from ${current} to ${max}: maxReplicas is ${max}.`);
  if (current < min) return finish(min, 'min', `Scaling up from ${current} to ${min}: minReplicas is ${min}.`);
  // As the HPA when no pod has metrics: no decision, nothing recorded.
  if (!proposals.length) return finish(current, 'missing-metrics', `Keeping ${current} replicas: no pod gave metrics (${withoutMetrics(fleet, current)}).`);

  // The largest proposal wins (the HPA's computeReplicasForMetrics); on a tie, the signal
  // furthest above its target is the one named.
  const deciding = proposals.reduce((a, b) => (b.input.proposed > a.input.proposed || (b.input.proposed === a.input.proposed && b.input.ratio > a.input.ratio) ? b : a));
  const recommended = deciding.input.proposed;
  state = recordProposal(state, now, recommended);

  // Stabilisation (stabilizeRecommendationWithBehaviors): scale-up at once (window 0),
  // scale-down only to the highest proposal of the window.
  const windowHighest = Math.max(...state.recommendations.map((r) => r.replicas));
  const stabilised = recommended > current ? recommended : Math.min(current, windowHighest);
  let desired = stabilised;
  let limitedBy: LimitedBy | undefined = stabilised > recommended ? 'stabilisation' : deciding.held;
  // Rate and bounds (convertDesiredReplicasWithBehaviorRate).
  const upLimit = scaleUpLimit(state, current);
  if (desired > current && desired > Math.min(upLimit, max)) {
    desired = Math.min(upLimit, max);
    limitedBy = upLimit < max ? 'rate' : 'max';
  } else if (recommended < min && desired <= min) {
    desired = min;
    limitedBy = 'min';
  }

  const why: Record<LimitedBy, string> = {
    rate: `; the scale-up rate allows ${desired} now (double or +${SCALE_UP_PODS} pods per ${SCALE_UP_PERIOD_MS / 1000} s)`,
    max: `; maxReplicas is ${max}`,
    min: `; minReplicas is ${min}`,
    stabilisation: `; the highest proposal of the last ${windowSeconds} s is ${windowHighest} (scale-down stabilisation)`,
    tolerance: '',
    'missing-metrics': '',
  };
  const verb = desired > current ? `Scaling up from ${current} to ${desired}` : desired < current ? `Scaling down from ${current} to ${desired}` : `Keeping ${current} replicas`;
  return finish(desired, limitedBy, `${verb}: ${describe(deciding, fleet, current)}${limitedBy ? why[limitedBy] : ''}.`);
}
