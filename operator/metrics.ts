/**
 * The operator's own metrics (prefix `mailfleet_operator_`) and its HTTP endpoints: /metrics
 * on one port, /healthz and /readyz on another (as the chart wires them).
 */
import http from 'node:http';
import type net from 'node:net';
import client from 'prom-client';

const PREFIX = 'mailfleet_operator_';

export class OperatorMetrics {
  readonly registry = new client.Registry();
  readonly reconciles: client.Counter<'controller' | 'result'>;
  readonly reconcileSeconds: client.Histogram<'controller'>;
  readonly queueDepth: client.Gauge<'controller'>;
  readonly leader: client.Gauge;
  readonly apiRequests: client.Counter<'verb'>;
  /** Per object (bounded by the objects in the cluster, like kube-state-metrics). */
  readonly senderDomainDnsVerified: client.Gauge<'namespace' | 'name' | 'domain'>;
  readonly senderDomainKeyWaitingSeconds: client.Gauge<'namespace' | 'name' | 'domain'>;
  readonly mailRelayReplicas: client.Gauge<'namespace' | 'name' | 'state'>;
  /** The autoscaler's decisions and its wanted replicas per MailRelay (defined here; the autoscaler sets them). */
  readonly scalingDecisions: client.Counter<'namespace' | 'name' | 'direction'>;
  readonly autoscalerDesiredReplicas: client.Gauge<'namespace' | 'name'>;

  constructor() {
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, prefix: `${PREFIX}process_` });
    this.reconciles = new client.Counter({ name: `${PREFIX}reconciles_total`, help: 'Reconciles by controller and result (success, error).', labelNames: ['controller', 'result'], registers });
    this.reconcileSeconds = new client.Histogram({
      name: `${PREFIX}reconcile_duration_seconds`,
      help: 'Time of one reconcile.',
      labelNames: ['controller'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.queueDepth = new client.Gauge({ name: `${PREFIX}workqueue_depth`, help: 'Objects waiting to be reconciled.', labelNames: ['controller'], registers });
    this.leader = new client.Gauge({ name: `${PREFIX}leader`, help: '1 while this replica holds the leader lease.', registers });
    this.senderDomainDnsVerified = new client.Gauge({ name: `${PREFIX}senderdomain_dns_verified`, help: '1 when DNS serves every record a SenderDomain needs (its DNSVerified condition).', labelNames: ['namespace', 'name', 'domain'], registers });
    this.senderDomainKeyWaitingSeconds = new client.Gauge({
      name: `${PREFIX}senderdomain_key_waiting_seconds`,
      help: 'How long the next DKIM key of a rotation has waited for DNS to serve its record (0 when none waits).',
      labelNames: ['namespace', 'name', 'domain'],
      registers,
    });
    this.mailRelayReplicas = new client.Gauge({ name: `${PREFIX}mailrelay_replicas`, help: 'Relay pods of a MailRelay: desired and ready.', labelNames: ['namespace', 'name', 'state'], registers });
    this.scalingDecisions = new client.Counter({
      name: `${PREFIX}scaling_decisions_total`,
      help: 'Replica changes the autoscaler decided for a MailRelay, by direction (up, down).',
      labelNames: ['namespace', 'name', 'direction'],
      registers,
    });
    this.autoscalerDesiredReplicas = new client.Gauge({
      name: `${PREFIX}autoscaler_desired_replicas`,
      help: 'Relay pods the autoscaler wants for a MailRelay at its last evaluation (after min/max and stabilisation).',
      labelNames: ['namespace', 'name'],
      registers,
    });
    this.apiRequests = new client.Counter({ name: `${PREFIX}api_requests_total`, help: 'Requests to the Kubernetes API by verb (watch streams count once).', labelNames: ['verb'], registers });
  }
}

export interface Probe {
  ok: boolean;
  reason?: string;
}

function serve(port: number, handler: (url: string, res: http.ServerResponse) => void): Promise<http.Server> {
  const server = http.createServer((req, res) => handler((req.url ?? '/').split('?')[0]!, res));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

const reply = (res: http.ServerResponse, code: number, body: string, type = 'text/plain; charset=utf-8') => {
  res.writeHead(code, { 'content-type': type });
  res.end(body);
};

export async function startOperatorHttp(opts: { metricsPort: number; healthPort: number; metrics: OperatorMetrics; ready: () => Probe }): Promise<{ metricsPort: number; healthPort: number; close(): Promise<void> }> {
  const metricsServer = await serve(opts.metricsPort, (url, res) => {
    if (url !== '/metrics') return reply(res, 404, 'not found: try /metrics\n');
    opts.metrics.registry.metrics().then((text) => reply(res, 200, text, opts.metrics.registry.contentType), (err: Error) => reply(res, 500, err.message));
  });
  const healthServer = await serve(opts.healthPort, (url, res) => {
    if (url === '/healthz') return reply(res, 200, 'ok\n');
    if (url === '/readyz') {
      const p = opts.ready();
      return reply(res, p.ok ? 200 : 503, p.ok ? 'ready\n' : `not ready: ${p.reason}\n`);
    }
    reply(res, 404, 'not found: try /healthz or /readyz\n');
  });
  const portOf = (s: http.Server) => (s.address() as net.AddressInfo).port;
  return {
    metricsPort: portOf(metricsServer),
    healthPort: portOf(healthServer),
    close: async () => {
      await Promise.all([metricsServer, healthServer].map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
