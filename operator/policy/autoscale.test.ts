import { describe, expect, it } from 'vitest';
import { autoscalingSchema } from '../api/v1alpha1.js';
import { decide, restoreState, type Decision, type PodSample } from './autoscale.js';
import { relaySignals, type RelaySignals } from '../controllers/relay-metrics.js';

// Defaults: minReplicas 2, maxReplicas 10, targets 500 ready messages / 60 s / 200 sessions, window 300 s.
const spec = (over: object = {}) => autoscalingSchema.parse({ enabled: true, ...over });
const t0 = Date.parse('2026-01-01T00:00:00Z');
const at = (second: number) => new Date(t0 + second * 1000);

const idle: RelaySignals = { ready: 0, oldestReadySeconds: 0, sessions: 0, queued: 0 };
/** n ready pods reporting the same signals. */
const pods = (n: number, signals: Partial<RelaySignals> = {}): PodSample[] => Array.from({ length: n }, (_, i) => ({ pod: `relay-${i}`, ready: true, metrics: { ...idle, ...signals } }));
const once = (currentReplicas: number, samples: PodSample[], settings = spec()) => decide({ spec: settings, currentReplicas, pods: samples, now: at(0), state: restoreState(undefined) });

/** Fleet totals: ready messages and sessions are shared by the ready pods, each sees the same oldest age. */
interface Load {
  ready?: number;
  oldest?: number;
  sessions?: number;
}

/**
 * A fleet the autoscaler drives: the state goes through JSON between decisions (as it does
 * through the MailRelay's status), and pods added by a decision are still starting (not
 * ready, no metrics) at the next one.
 */
class Fleet {
  state = restoreState(undefined);
  private starting = 0;

  constructor(
    public replicas: number,
    private readonly settings = spec(),
  ) {}

  decide(second: number, load: Load): Decision {
    const readyPods = this.replicas - this.starting;
    const samples: PodSample[] = Array.from({ length: this.replicas }, (_, i) =>
      i < readyPods ? { pod: `relay-${i}`, ready: true, metrics: { ready: (load.ready ?? 0) / readyPods, oldestReadySeconds: load.oldest ?? 0, sessions: (load.sessions ?? 0) / readyPods, queued: (load.ready ?? 0) / readyPods } } : { pod: `relay-${i}`, ready: false },
    );
    const decision = decide({ spec: this.settings, currentReplicas: this.replicas, pods: samples, now: at(second), state: this.state });
    this.state = JSON.parse(JSON.stringify(decision.state));
    this.starting = Math.max(0, decision.desired - this.replicas);
    this.replicas = decision.desired;
    return decision;
  }

  /** Decisions every `every` seconds from `from` to `to` inclusive. */
  run(from: number, to: number, every: number, load: (second: number) => Load): Decision[] {
    const decisions: Decision[] = [];
    for (let s = from; s <= to; s += every) decisions.push(this.decide(s, load(s)));
    return decisions;
  }
}

/** A seeded generator, so a noisy run is the same on every test run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('each signal against its target', () => {
  it('keeps the count within the 10% tolerance and follows the ratio beyond it', () => {
    for (const perReplica of [460, 540, 550]) {
      const d = once(5, pods(5, { ready: perReplica }));
      expect(d.desired).toBe(5);
      expect(d.limitedBy).toBe('tolerance');
      expect(d.reason).toBe(`Keeping 5 replicas: messages due now per replica ${perReplica} vs target 500 is within the 10% tolerance.`);
    }
    // 560 per replica on 5 pods: 2800 messages, ceil(2800 / 500) = 6.
    const up = once(5, pods(5, { ready: 560 }));
    expect(up.desired).toBe(6);
    expect(up.inputs.readyMessagesPerReplica).toEqual({ value: 560, target: 500, ratio: 1.12, proposed: 6 });
    expect(once(5, pods(5, { ready: 300 })).inputs.readyMessagesPerReplica?.proposed).toBe(3);
  });

  it('takes the largest proposal over the three signals and names the signal that decided', () => {
    const d = once(5, pods(5, { ready: 600, oldestReadySeconds: 30, sessions: 400 }));
    expect(d.inputs).toEqual({
      readyMessagesPerReplica: { value: 600, target: 500, ratio: 1.2, proposed: 6 },
      oldestReadySeconds: { value: 30, target: 60, ratio: 0.5, proposed: 3 },
      sessionsPerReplica: { value: 400, target: 200, ratio: 2, proposed: 10 },
    });
    expect(d.desired).toBe(10);
    expect(d.limitedBy).toBeUndefined();
    expect(d.reason).toBe('Scaling up from 5 to 10: open SMTP sessions per replica 400 vs target 200 asks for 10.');

    // The age is fleet-wide: ceil(180 / 60 * 3 ready pods) = 9, of which the rate allows 7 now.
    const aged = once(3, pods(3, { ready: 100, oldestReadySeconds: 180, sessions: 10 }));
    expect(aged.inputs.oldestReadySeconds).toEqual({ value: 180, target: 60, ratio: 3, proposed: 9 });
    expect(aged.desired).toBe(7);
    expect(aged.reason).toBe("Scaling up from 3 to 7: the oldest due message's age 180 s vs target 60 s asks for 9; the scale-up rate allows 7 now (double or +4 pods per 15 s).");
  });

  it('does not scale up for deferred mail: a backlog waiting for its retry time is not due now', () => {
    const exposition = [
      '# HELP mailfleet_relay_queue_messages Messages in the queue by state.',
      '# TYPE mailfleet_relay_queue_messages gauge',
      'mailfleet_relay_queue_messages{state="ready"} 0',
      'mailfleet_relay_queue_messages{state="deferred"} 50000',
      'mailfleet_relay_queue_messages{state="inflight"} 0',
      'mailfleet_relay_queue_oldest_ready_seconds 0',
    ].join('\n');
    const signals = relaySignals(exposition)!;
    const d = once(2, [{ pod: 'relay-0', ready: true, metrics: signals }, { pod: 'relay-1', ready: true, metrics: signals }]);
    expect(d.desired).toBe(2);
    expect(d.inputs.readyMessagesPerReplica?.value).toBe(0);
    expect(d.limitedBy).toBe('min');
  });
});

describe('scale-up', () => {
  it('meets a backlog within two intervals: at once as far as the rate allows, the rest 15 s later', () => {
    const fleet = new Fleet(2);
    // 5000 messages due: 10 pods at 500 each.
    const [first, second, third] = fleet.run(0, 30, 15, () => ({ ready: 5000 }));
    expect(first!.desired).toBe(6);
    expect(first!.limitedBy).toBe('rate');
    expect(first!.reason).toBe('Scaling up from 2 to 6: messages due now per replica 2500 vs target 500 asks for 10; the scale-up rate allows 6 now (double or +4 pods per 15 s).');
    // The 4 new pods are still starting: counted as idle, they do not change the total asked for.
    expect(second!.desired).toBe(10);
    expect(second!.limitedBy).toBeUndefined();
    expect(second!.reason).toBe('Scaling up from 6 to 10: messages due now per replica 2500 vs target 500 (833.3 counting the 4 pod(s) not ready as idle, as the HPA does) asks for 10.');
    // Next time 4 are starting again: 833 per ready pod, 500 over all of them.
    expect(third!.desired).toBe(10);
    expect(third!.limitedBy).toBe('tolerance');
    expect(third!.reason).toBe('Keeping 10 replicas: messages due now per replica 833.3 vs target 500 (500 counting the 4 pod(s) not ready as idle, as the HPA does) is within the 10% tolerance.');
  });

  it('meets a backlog of up to double the fleet in one interval', () => {
    const fleet = new Fleet(4);
    expect(fleet.decide(0, { ready: 4000 }).desired).toBe(8);
    expect(fleet.decide(15, { ready: 4000 }).desired).toBe(8);
  });

  it('limits the rate per 15 s, however often it decides: the larger of double and +4', () => {
    const fleet = new Fleet(2, spec({ interval: '5s', maxReplicas: 50 }));
    const counts = fleet.run(0, 45, 5, () => ({ ready: 20_000 })).map((d) => d.desired);
    // 2 -> 6 (+4 beats double); 6 -> 12 and 12 -> 24 (double beats +4); then the 40 asked for.
    expect(counts).toEqual([6, 6, 6, 12, 12, 12, 24, 24, 24, 40]);
    expect(fleet.run(50, 50, 5, () => ({ ready: 20_000 }))[0]!.limitedBy).toBe('tolerance');
  });
});

describe('scale-down', () => {
  it('waits until the last higher proposal is a whole window old', () => {
    const fleet = new Fleet(10);
    fleet.run(-60, 0, 15, () => ({ ready: 5000 }));
    const waiting = fleet.run(15, 285, 15, () => ({}));
    expect(waiting.every((d) => d.desired === 10 && d.limitedBy === 'stabilisation')).toBe(true);
    expect(waiting[0]!.reason).toBe('Keeping 10 replicas: messages due now per replica 0 vs target 500 asks for 0; the highest proposal of the last 300 s is 10 (scale-down stabilisation).');
    const down = fleet.decide(300, {});
    expect(down.desired).toBe(2);
    expect(down.limitedBy).toBe('min');
    expect(down.reason).toBe('Scaling down from 10 to 2: messages due now per replica 0 vs target 500 asks for 0; minReplicas is 2.');
  });

  it('steps down to the highest proposal still inside the window', () => {
    const fleet = new Fleet(10);
    fleet.decide(0, { ready: 5000 });
    // 3000 due (6 pods) until 150 s, then 1500 (3 pods).
    const decisions = fleet.run(15, 450, 15, (s) => ({ ready: s <= 150 ? 3000 : 1500 }));
    const at = (second: number) => decisions[second / 15 - 1]!;
    expect(at(285).desired).toBe(10);
    expect(at(300).desired).toBe(6);
    expect(at(300).limitedBy).toBe('stabilisation');
    expect(at(435).desired).toBe(6);
    expect(at(450).desired).toBe(3);
  });

  it('does not follow a dip shorter than the window', () => {
    const fleet = new Fleet(10);
    const decisions = fleet.run(0, 900, 15, (s) => ({ ready: s >= 15 && s <= 135 ? 1000 : 5000 }));
    expect(decisions.map((d) => d.desired)).toEqual(decisions.map(() => 10));
  });

  it('does not flap under a steady load with ±8% noise over an hour', () => {
    const noise = random(42);
    const around = (value: number) => value * (1 + (noise() * 2 - 1) * 0.08);
    const fleet = new Fleet(5);
    const decisions = fleet.run(0, 3600, 15, () => ({ ready: around(2500), oldest: around(60), sessions: around(1000) }));
    expect(decisions).toHaveLength(241);
    expect(decisions.filter((d) => d.desired !== 5)).toEqual([]);
    expect(JSON.stringify(fleet.state).length).toBeLessThan(200);
  });
});

describe('minReplicas and maxReplicas', () => {
  it('caps a scale-up at maxReplicas', () => {
    const d = once(8, pods(8, { ready: 2000 }));
    expect(d.desired).toBe(10);
    expect(d.limitedBy).toBe('max');
    expect(d.reason).toBe('Scaling up from 8 to 10: messages due now per replica 2000 vs target 500 asks for 32; maxReplicas is 10.');
  });

  it('brings a count outside the range into it at once, whatever the metrics, and records no proposal', () => {
    const above = once(12, pods(12, { ready: 5000 }));
    expect(above).toMatchObject({ desired: 10, limitedBy: 'max', reason: 'Scaling down from 12 to 10: maxReplicas is 10.' });
    expect(above.state.recommendations).toEqual([]);
    // A fleet at zero (new, or scaled to 0 by hand) starts at minReplicas.
    const zero = once(0, []);
    expect(zero).toMatchObject({ desired: 2, limitedBy: 'min', reason: 'Scaling up from 0 to 2: minReplicas is 2.', inputs: {} });
  });
});

describe('missing metrics, as the HPA counts them', () => {
  const answering = (n: number, signals: Partial<RelaySignals>, silent: number): PodSample[] => [...pods(n, signals), ...Array.from({ length: silent }, (_, i) => ({ pod: `silent-${i}`, ready: true }))];

  it('on a scale-up, counts a pod that did not answer as idle', () => {
    // All four at 1000 would ask for 8; three at 1000 and one at 0 ask for 6.
    const d = once(4, answering(3, { ready: 1000 }, 1));
    expect(d.inputs.readyMessagesPerReplica).toEqual({ value: 1000, target: 500, ratio: 2, proposed: 6 });
    expect(d.desired).toBe(6);
  });

  it('on a scale-down, counts a pod that did not answer as at target', () => {
    const settings = spec({ minReplicas: 1 });
    expect(once(4, pods(4, { ready: 100 }), settings).desired).toBe(1);
    // (3 * 100 + 500) / 500 = 1.6: 2 pods.
    const d = once(4, answering(3, { ready: 100 }, 1), settings);
    expect(d.inputs.readyMessagesPerReplica?.proposed).toBe(2);
    expect(d.desired).toBe(2);
  });

  it('keeps the count when counting them so would reverse the direction', () => {
    // One pod at 600 (above target) and three silent: counted at 0 the fleet is at 0.3 of target.
    const d = once(4, answering(1, { ready: 600 }, 3));
    expect(d.desired).toBe(4);
    expect(d.limitedBy).toBe('missing-metrics');
    expect(d.reason).toBe('Keeping 4 replicas: messages due now per replica 600 vs target 500 (150 counting the 3 ready pod(s) that did not answer /metrics as idle, as the HPA does), which points the other way.');
  });

  it('on a scale-down, counts a pod that did not answer as needing itself for the age too', () => {
    // ceil(5 / 60 * 4) = 1 pod; with one silent pod, ceil(5 / 60 * 3 + 1) = 2.
    expect(once(4, pods(4, { oldestReadySeconds: 5 })).inputs.oldestReadySeconds?.proposed).toBe(1);
    expect(once(4, answering(3, { oldestReadySeconds: 5 }, 1)).inputs.oldestReadySeconds?.proposed).toBe(2);
    // On the way up a silent pod is taken at 0: the largest age stands, over all ready pods.
    expect(once(4, answering(3, { oldestReadySeconds: 90 }, 1)).inputs.oldestReadySeconds?.proposed).toBe(6);
  });

  it('counts pods still starting as idle on a scale-up, and leaves them out on a scale-down', () => {
    const starting = (n: number): PodSample[] => Array.from({ length: n }, (_, i) => ({ pod: `new-${i}`, ready: false }));
    // 1200 due over 4 pods is 0.6 of target: the starting pods absorb it.
    expect(once(4, [...pods(2, { ready: 600 }), ...starting(2)])).toMatchObject({ desired: 4, limitedBy: 'missing-metrics' });
    expect(once(4, [...pods(2, { ready: 1500 }), ...starting(2)]).desired).toBe(6);
    expect(once(4, [...pods(2, { ready: 100 }), ...starting(2)], spec({ minReplicas: 1 })).inputs.readyMessagesPerReplica?.proposed).toBe(1);
  });

  it('keeps the count and records nothing when no ready pod answered', () => {
    const state = new Fleet(3).decide(0, { ready: 1500 }).state;
    const silent = decide({ spec: spec(), currentReplicas: 3, pods: [{ pod: 'a', ready: true }, { pod: 'b', ready: true }, { pod: 'c', ready: false }], now: at(15), state });
    expect(silent).toMatchObject({ desired: 3, limitedBy: 'missing-metrics', inputs: {}, reason: 'Keeping 3 replicas: no pod gave metrics (2 ready pod(s) that did not answer /metrics and 1 pod(s) not ready).' });
    expect(silent.state).toEqual(state);
    const unready = decide({ spec: spec(), currentReplicas: 3, pods: [{ pod: 'a', ready: false }], now: at(15), state });
    expect(unready.reason).toBe('Keeping 3 replicas: no pod gave metrics (1 pod(s) not ready).');
    expect(decide({ spec: spec(), currentReplicas: 3, pods: [], now: at(15), state })).toMatchObject({ desired: 3, reason: 'Keeping 3 replicas: no pod gave metrics (3 replica(s) without a pod yet).' });
  });
});

describe('state', () => {
  it('decides the same whether or not the state went through JSON, and reads garbage as a fresh start', () => {
    const load = (s: number) => ({ ready: s < 600 ? 4000 + (s % 90) * 10 : 300, sessions: 600 });
    const viaJson = new Fleet(2).run(0, 1200, 15, load);
    let state = restoreState(undefined);
    let replicas = 2;
    let starting = 0;
    for (const [i, expected] of viaJson.entries()) {
      const second = i * 15;
      const ready = replicas - starting;
      const samples = Array.from({ length: replicas }, (_, p) => (p < ready ? { pod: `relay-${p}`, ready: true, metrics: { ready: load(second).ready / ready, oldestReadySeconds: 0, sessions: load(second).sessions / ready, queued: load(second).ready / ready } } : { pod: `relay-${p}`, ready: false }));
      const d = decide({ spec: spec(), currentReplicas: replicas, pods: samples, now: at(second), state });
      expect(d).toEqual(expected);
      starting = Math.max(0, d.desired - replicas);
      [state, replicas] = [d.state, d.desired];
    }
    expect(new Set(viaJson.map((d) => d.desired)).size).toBeGreaterThan(2);

    expect(restoreState({ recommendations: 'lots' })).toEqual({ recommendations: [], scaleEvents: [] });
    expect(restoreState(null)).toEqual({ recommendations: [], scaleEvents: [] });
  });

  it('stays small: only proposals that can still be the window\'s highest are kept', () => {
    const noise = random(7);
    const fleet = new Fleet(5, spec({ interval: '1s', maxReplicas: 40 }));
    fleet.run(0, 3600, 1, () => ({ ready: noise() * 10_000 }));
    expect(fleet.state.recommendations.length).toBeLessThan(25);
    expect(JSON.stringify(fleet.state).length).toBeLessThan(2000);
  });
});
