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
import { API_VERSION, type MailRelay, type SenderDomain } from './api/v1alpha1.js';
import { KubeEvents } from './controllers/events.js';
import { FleetAutoscaler } from './controllers/fleet-autoscaler.js';
import { MailRelayController } from './controllers/mailrelay.js';
import { SenderDomainController } from './controllers/senderdomain.js';
import { KubeClient, type AnyObject } from './kube/client.js';
import { Informer, keyOf } from './kube/informer.js';
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

const MANAGED = 'app.kubernetes.io/managed-by=mailfleet-operator';

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

  // Optional CRDs decide whether ServiceMonitors and DNSEndpoints are made; checked now and then.
  const optional = { serviceMonitors: false, dnsEndpoints: false };
  const checkOptionalCrds = async () => {
    const has = async (name: string) => !!(await client.get({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name }).catch(() => undefined));
    optional.serviceMonitors = await has('servicemonitors.monitoring.coreos.com');
    optional.dnsEndpoints = await has('dnsendpoints.externaldns.k8s.io');
  };
  await checkOptionalCrds();
  const crdTimer = setInterval(() => void checkOptionalCrds(), 5 * 60_000);
  crdTimer.unref();

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
    secret: lookup('Secret'),
    dnsEndpoints: () => optional.dnsEndpoints,
    verify: (records, servers) => verifyRecords(records, { servers, timeoutMs: 5000 }),
    metrics,
  });
  const mailRelayController = new MailRelayController({ client, events, log, now, senderDomains: domains, deployment: lookup('Deployment'), managedSecret: lookup('Secret'), serviceMonitors: () => optional.serviceMonitors, defaultImage: opts.defaultImage, missingRetryMs: opts.missingRetryMs ?? 15_000, metrics });

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
  const enqueueNamespace = (q: WorkQueue, getAll: () => AnyObject[], namespace: string) => {
    for (const o of getAll()) if (o.metadata.namespace === namespace) q.add(keyOf(o));
  };
  /** Labels, spec and the named status fields: what other controllers read of an object. */
  const relevant = (o: AnyObject | undefined, statusFields: string[]) => {
    const status = (o?.status ?? {}) as Record<string, unknown>;
    return JSON.stringify([o?.metadata.labels, o?.spec, statusFields.map((f) => status[f])]);
  };
  const ownerChanged = (q: WorkQueue, key: string, owner: string | undefined) => owner && q.add(`${key.split('/')[0]}/${owner}`);
  const ownerName = (o: AnyObject | undefined, kind: string) => (o?.metadata.ownerReferences as { kind: string; name: string }[] | undefined)?.find((r) => r.kind === kind)?.name;
  const watchers: { kind: string; apiVersion: string; labelSelector?: string; onChange: (key: string, o: AnyObject | undefined, previous: AnyObject | undefined) => void }[] = [
    {
      apiVersion: API_VERSION,
      kind: 'SenderDomain',
      onChange: (key, o, previous) => {
        domainQueue.add(key);
        if (!o && previous) {
          const labels = { namespace: previous.metadata.namespace ?? '', name: previous.metadata.name, domain: (previous.spec as { domain?: string }).domain ?? '' };
          metrics.senderDomainDnsVerified.remove(labels);
          metrics.senderDomainKeyWaitingSeconds.remove(labels);
        }
        // Relays that sign for a domain render its keys into their config: they care about its
        // labels, spec and keys, not about its conditions or DNS checks.
        if (relevant(o, ['keys', 'secretName']) !== relevant(previous, ['keys', 'secretName'])) enqueueNamespace(relayQueue, relays as never, key.split('/')[0]!);
      },
    },
    {
      apiVersion: API_VERSION,
      kind: 'MailRelay',
      onChange: (key, o, previous) => {
        relayQueue.add(key);
        if (!o && previous) for (const state of ['desired', 'ready']) metrics.mailRelayReplicas.remove({ namespace: previous.metadata.namespace ?? '', name: previous.metadata.name, state });
        // A relay's route and egress addresses shape its domains' SPF records (its status does not).
        if (relevant(o, []) !== relevant(previous, [])) enqueueNamespace(domainQueue, domains as never, key.split('/')[0]!);
      },
    },
    // The operator's own Deployments and Secrets: a change (a pod ready, a key Secret edited) goes to the owner.
    { apiVersion: 'apps/v1', kind: 'Deployment', labelSelector: MANAGED, onChange: (key, o, previous) => ownerChanged(relayQueue, key, ownerName(o ?? previous, 'MailRelay')) },
    // A deleted handoff Secret (owned by a MailRelay) is made again at once, not at the next resync.
    {
      apiVersion: 'v1',
      kind: 'Secret',
      labelSelector: MANAGED,
      onChange: (key, o, previous) => {
        ownerChanged(domainQueue, key, ownerName(o ?? previous, 'SenderDomain'));
        ownerChanged(relayQueue, key, ownerName(o ?? previous, 'MailRelay'));
      },
    },
    // Relay pods, for the autoscaler (it reads the cache every interval).
    { apiVersion: 'v1', kind: 'Pod', labelSelector: MANAGED, onChange: () => undefined },
  ];
  for (const scope of scopes) {
    for (const w of watchers) {
      const informer: Informer = new Informer(client, {
        apiVersion: w.apiVersion,
        kind: w.kind,
        namespace: scope,
        ...(w.labelSelector ? { labelSelector: w.labelSelector } : {}),
        resyncMs: opts.resyncMs,
        onChange: (key, object, previous) => {
          if (leading) w.onChange(key, object, previous);
        },
        onError: (err) => log.warn({ err: (err as Error).message, kind: w.kind, namespace: scope ?? '(all)' }, 'watch failed; watching again'),
      });
      informers.push(informer);
    }
  }
  await Promise.all(informers.map((i) => i.start()));

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
    for (const i of informers) for (const [key, object] of i.cache) watchers.find((w) => w.kind === i.kind)!.onChange(key, object, undefined);
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
      clearInterval(crdTimer);
      clearInterval(depth);
      await Promise.all([domainQueue.stop(), relayQueue.stop()]);
      await elector?.stop();
      for (const i of informers) i.stop();
      await http.close();
      log.info({ event: 'stopped' }, 'operator stopped');
    },
  };
}
