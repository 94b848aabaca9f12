/**
 * The operator process: informers keep caches of the watched resources on every replica; the
 * one that holds the leader Lease runs the work queues that reconcile. Losing the lease stops
 * reconciling at once and exits (the pod restarts as a standby). SIGTERM finishes running
 * reconciles, gives the lease up so a standby takes over at once, and exits.
 */
import os from 'node:os';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { verifyRecords } from '../relay/records-verify.js';
import type { MailRelay, SenderDomain } from './api/v1alpha1.js';
import { KubeEvents } from './controllers/events.js';
import { FleetAutoscaler } from './controllers/fleet-autoscaler.js';
import { MailRelayController, mailRelayWatches } from './controllers/mailrelay.js';
import { lookupReverse } from './controllers/reverse-dns.js';
import { SenderDomainController, senderDomainWatches } from './controllers/senderdomain.js';
import { madeByOperator, MANAGED, withoutForeignValues } from './controllers/watches.js';
import { KubeClient, type AnyObject } from './kube/client.js';
import { Informer, keyOf } from './kube/informer.js';
import { ApiDiscovery } from './kube/discovery.js';
import { LeaderElector } from './kube/leader.js';
import { WorkQueue } from './kube/workqueue.js';
import { OperatorMetrics, startOperatorHttp } from './metrics.js';

export interface OperatorOptions {
  kubeConfig: KubeConfig;
  log: Logger;
  /** Namespaces to watch; empty: all. */
  namespaces: string[];
  leaderElection: { enabled: boolean; namespace: string; name: string; identity: string; leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number };
  metricsPort: number;
  healthPort: number;
  defaultImage: string;
  resyncMs: number;
  /** How often a MailRelay waiting for a Secret looks again (default 15 s). */
  missingRetryMs?: number;
  /** How often discovery asks which optional APIs are served (default 5 minutes). */
  discoveryIntervalMs?: number;
  now?: () => Date;
  /** Called when leadership is lost (the command exits; tests observe). */
  onLostLeadership?: () => void;
}

export interface RunningOperator {
  metrics: OperatorMetrics;
  metricsPort: number;
  healthPort: number;
  isLeader(): boolean;
  requests(): Record<string, number>;
  stop(): Promise<void>;
}


export function defaultIdentity(): string {
  return process.env.POD_NAME ?? `${os.hostname()}-${process.pid}`;
}

export async function startOperator(opts: OperatorOptions): Promise<RunningOperator> {
  const { log } = opts;
  const now = opts.now ?? (() => new Date());
  const metrics = new OperatorMetrics();
  const requests: Record<string, number> = {};
  const client = new KubeClient(opts.kubeConfig, (verb) => {
    requests[verb] = (requests[verb] ?? 0) + 1;
    metrics.apiRequests.inc({ verb });
  });
  const events = new KubeEvents(client, (err) => log.warn({ err }, 'could not record an Event'));
  const scopes: (string | undefined)[] = opts.namespaces.length ? opts.namespaces : [undefined];

  // APIs that many clusters do not serve (policy/v1 before 1.21, the Prometheus Operator's and
  // external-dns's groups): asked by discovery now, every 5 minutes, and when an apply finds one gone.
  const discovery = new ApiDiscovery(
    client,
    (apiVersion, served) => {
      log.info({ event: 'api_discovered', apiVersion, served }, served ? `the cluster serves ${apiVersion}` : `the cluster does not serve ${apiVersion}`);
      // The first look happens before the informers start; later ones add or stop informers.
      if (!discovered) return;
      void syncInformers();
      // Everything that renders objects of that API looks again.
      if (!leading) return;
      for (const o of relays()) relayQueue.add(keyOf(o));
      for (const o of domains()) domainQueue.add(keyOf(o));
    },
    (err) => log.warn({ err: (err as Error).message }, 'discovery failed; keeping what it said before'),
  );
  let discovered = false;
  let rediscovering = false;
  const apiGone = () => {
    if (rediscovering) return;
    rediscovering = true;
    void discovery.refresh().finally(() => (rediscovering = false));
  };

  const informers: Informer[] = [];
  const cached = <T>(kind: string) => () => informers.filter((i) => i.kind === kind).flatMap((i) => [...i.cache.values()]) as T[];
  const relays = cached<MailRelay>('MailRelay');
  const domains = cached<SenderDomain>('SenderDomain');
  const lookup = (kind: string) => (namespace: string, name: string) => {
    for (const i of informers) if (i.kind === kind && i.cache.has(`${namespace}/${name}`)) return i.cache.get(`${namespace}/${name}`);
    return undefined;
  };

  const senderDomainController = new SenderDomainController({
    client,
    events,
    log,
    now,
    relays,
    // Its own Secrets only: the cache holds others without their values (withoutForeignValues).
    secret: (namespace, name) => {
      const secret = lookup('Secret')(namespace, name);
      return secret && madeByOperator(secret) ? secret : undefined;
    },
    dnsEndpoints: () => discovery.serves('externaldns.k8s.io/v1alpha1'),
    verify: (records, servers) => verifyRecords(records, { servers, timeoutMs: 5000 }),
    reverse: (addresses, servers) => lookupReverse(addresses, { servers, timeoutMs: 5000 }),
    metrics,
  });
  const mailRelayController = new MailRelayController({
    client,
    events,
    log,
    now,
    senderDomains: domains,
    deployment: lookup('Deployment'),
    managedSecret: lookup('Secret'),
    owned: (apiVersion, kind) => (informers.some((i) => i.kind === kind && i.apiVersion === apiVersion) ? lookup(kind) : undefined),
    serves: (apiVersion) => discovery.serves(apiVersion),
    apiGone,
    defaultImage: opts.defaultImage,
    missingRetryMs: opts.missingRetryMs ?? 15_000,
    metrics,
  });

  const queue = (controller: string, kind: string, reconcile: (o: AnyObject) => Promise<{ requeueAfterMs?: number } | void>) =>
    new WorkQueue(
      async (key) => {
        const object = lookup(kind)(key.split('/')[0]!, key.split('/')[1]!);
        if (!object || object.metadata.deletionTimestamp) return;
        return reconcile(object);
      },
      {
        concurrency: 4,
        baseBackoffMs: 1000,
        maxBackoffMs: 5 * 60_000,
        onResult: (key, outcome, seconds, err) => {
          metrics.reconciles.inc({ controller, result: outcome });
          metrics.reconcileSeconds.observe({ controller }, seconds);
          if (err) log.warn({ err: (err as Error).message, controller, object: key }, 'reconcile failed; will retry with backoff');
        },
      },
    );
  const domainQueue = queue('senderdomain', 'SenderDomain', (o) => senderDomainController.reconcile(o as unknown as SenderDomain));
  const relayQueue = queue('mailrelay', 'MailRelay', (o) => mailRelayController.reconcile(o as unknown as MailRelay));
  const depth = setInterval(() => {
    metrics.queueDepth.set({ controller: 'senderdomain' }, domainQueue.depth);
    metrics.queueDepth.set({ controller: 'mailrelay' }, relayQueue.depth);
  }, 1000);
  depth.unref();

  let leading = !opts.leaderElection.enabled;
  let stopping = false;
  /** Each controller's watches (declared beside its reconcile) feed its queue. */
  const controllers = [
    { queue: domainQueue, watches: senderDomainWatches, objects: cached<AnyObject>('SenderDomain') },
    { queue: relayQueue, watches: mailRelayWatches, objects: cached<AnyObject>('MailRelay') },
  ];
  /** A deleted resource's gauge series go with it. */
  const forget = (kind: string, previous: AnyObject) => {
    const { namespace = '', name } = previous.metadata;
    if (kind === 'SenderDomain') {
      const labels = { namespace, name, domain: (previous.spec as { domain?: string }).domain ?? '' };
      metrics.senderDomainDnsVerified.remove(labels);
      metrics.senderDomainKeyWaitingSeconds.remove(labels);
    }
    if (kind === 'MailRelay') for (const state of ['desired', 'ready']) metrics.mailRelayReplicas.remove({ namespace, name, state });
  };
  const onChange = (apiVersion: string, kind: string) => (key: string, o: AnyObject | undefined, previous: AnyObject | undefined) => {
    if (!o && previous) forget(kind, previous);
    for (const c of controllers) {
      const inNamespace = (namespace: string) => c.objects().filter((x) => x.metadata.namespace === namespace).map(keyOf);
      for (const w of c.watches) if (w.kind === kind && w.apiVersion === apiVersion) for (const k of w.requeue(key, o, previous, inNamespace)) c.queue.add(k);
    }
  };
  // One informer per kind for every controller's watches, and relay pods for the autoscaler (it reads the cache).
  const kinds = new Map<string, { apiVersion: string; kind: string; labelSelector?: string }>();
  for (const w of [...controllers.flatMap((c) => c.watches), { apiVersion: 'v1', kind: 'Pod', labelSelector: MANAGED }]) {
    const id = `${w.apiVersion} ${w.kind}`;
    const seen = kinds.get(id);
    // Two watches of one kind with different selectors: watch it all.
    kinds.set(id, seen && seen.labelSelector !== w.labelSelector ? { ...seen, labelSelector: undefined } : (seen ?? { apiVersion: w.apiVersion, kind: w.kind, labelSelector: w.labelSelector }));
  }
  const watchers = [...kinds.values()].map((k) => ({ ...k, onChange: onChange(k.apiVersion, k.kind) }));
  /** Informers for every watcher whose API is served, in every scope; those of APIs gone are stopped. */
  const syncInformers = () => {
    for (const i of [...informers]) {
      if (discovery.serves(i.apiVersion)) continue;
      i.stop();
      informers.splice(informers.indexOf(i), 1);
    }
    const started: Promise<void>[] = [];
    for (const scope of scopes) {
      for (const w of watchers) {
        if (!discovery.serves(w.apiVersion) || informers.some((i) => i.kind === w.kind && i.apiVersion === w.apiVersion && i.namespace === scope)) continue;
        const informer: Informer = new Informer(client, {
          apiVersion: w.apiVersion,
          kind: w.kind,
          namespace: scope,
          ...(w.labelSelector ? { labelSelector: w.labelSelector } : {}),
          ...(w.kind === 'Secret' && w.apiVersion === 'v1' ? { transform: withoutForeignValues } : {}),
          resyncMs: opts.resyncMs,
          onChange: (key, object, previous) => {
            if (leading) w.onChange(key, object, previous);
          },
          onError: (err) => log.warn({ err: (err as Error).message, kind: w.kind, namespace: scope ?? '(all)' }, 'watch failed; watching again'),
        });
        informers.push(informer);
        started.push(informer.start());
      }
    }
    return Promise.all(started);
  };
  await discovery.refresh();
  discovered = true;
  discovery.start(opts.discoveryIntervalMs ?? 5 * 60_000);
  await syncInformers();

  const autoscaler = new FleetAutoscaler({
    client,
    events,
    log,
    now,
    metrics,
    relays,
    pods: (namespace) => informers.filter((i) => i.kind === 'Pod').flatMap((i) => [...i.cache.values()]).filter((p) => p.metadata.namespace === namespace),
    deployment: lookup('Deployment'),
  });

  const startControllers = () => {
    leading = true;
    autoscaler.start();
    metrics.leader.set(1);
    log.info({ event: 'leading', identity: opts.leaderElection.identity }, 'leading: reconciling');
    for (const i of informers) for (const [key, object] of i.cache) watchers.find((w) => w.kind === i.kind && w.apiVersion === i.apiVersion)!.onChange(key, object, undefined);
  };
  let elector: LeaderElector | undefined;
  if (opts.leaderElection.enabled) {
    const le = opts.leaderElection;
    elector = new LeaderElector(
      {
        get: (namespace, name) => client.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace, name }) as never,
        create: (lease) => client.create(lease as never) as never,
        replace: (lease) => client.replace(lease as never) as never,
      },
      {
        ...le,
        onStartedLeading: startControllers,
        onStoppedLeading: () => {
          if (!leading || stopping) return;
          leading = false;
          autoscaler.stop();
          metrics.leader.set(0);
          log.error({ event: 'lost_leadership', identity: le.identity }, 'lost the leader lease: stopping');
          void Promise.all([domainQueue.stop(), relayQueue.stop()]).then(() => opts.onLostLeadership?.());
        },
        onError: (err) => log.warn({ err: (err as Error).message }, 'leader election: could not reach the Lease'),
      },
    );
    elector.start();
  } else startControllers();

  const http = await startOperatorHttp({
    metricsPort: opts.metricsPort,
    healthPort: opts.healthPort,
    metrics,
    ready: () => (informers.every((i) => i.synced) ? { ok: true } : { ok: false, reason: 'caches not synced yet' }),
  });
  log.info({ event: 'started', namespaces: opts.namespaces.length ? opts.namespaces : 'all', leaderElection: opts.leaderElection.enabled, metricsPort: http.metricsPort, healthPort: http.healthPort }, 'operator started');

  return {
    metrics,
    metricsPort: http.metricsPort,
    healthPort: http.healthPort,
    isLeader: () => leading,
    requests: () => ({ ...requests }),
    stop: async () => {
      stopping = true;
      autoscaler.stop();
      discovery.stop();
      clearInterval(depth);
      await Promise.all([domainQueue.stop(), relayQueue.stop()]);
      await elector?.stop();
      for (const i of informers) i.stop();
      await http.close();
      log.info({ event: 'stopped' }, 'operator stopped');
    },
  };
}
