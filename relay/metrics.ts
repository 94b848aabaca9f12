/**
 * The relay's Prometheus metrics: the contract in docs/metrics.md (prefix
 * `mailfleet_relay_`). Labels stay bounded: no addresses, no unbounded domain sets.
 */
import client from 'prom-client';
import { SMARTHOST_AUTH_REASONS, type SmarthostAuthReason } from './delivery/smarthost-auth.js';

const PREFIX = 'mailfleet_relay_';

export type Provider = 'gmail' | 'microsoft' | 'yahoo' | 'apple' | 'other' | 'smarthost';

const PROVIDER_DOMAINS: [RegExp, Provider][] = [
  [/^(gmail|googlemail)\.com$/, 'gmail'],
  [/^(outlook|hotmail|live|msn)\.[a-z.]+$/, 'microsoft'],
  [/^(yahoo|ymail|rocketmail|aol)\.[a-z.]+$/, 'yahoo'],
  [/^(icloud|me|mac)\.com$/, 'apple'],
];

/** The bounded provider label for a destination (a recipient domain or the smarthost). */
export function providerOf(route: string, destination: string): Provider {
  if (route === 'smarthost') return 'smarthost';
  return PROVIDER_DOMAINS.find(([re]) => re.test(destination))?.[1] ?? 'other';
}

export interface QueueGauges {
  ready: number;
  deferred: number;
  inflight: number;
  oldestReadySeconds: number;
  overdueSeconds: number;
}

/** The `reason` label of auth_failures_total: a bounded set. */
export type AuthFailureReason = 'bad_credentials' | 'locked_out' | 'too_many_failures' | 'authzid' | 'busy';
const AUTH_FAILURE_REASONS: readonly AuthFailureReason[] = ['bad_credentials', 'locked_out', 'too_many_failures', 'authzid', 'busy'];

/** Metrics of intake and the process: they live where the listeners run. */
export class IntakeMetrics {
  readonly registry = new client.Registry();
  readonly received: client.Counter<'listener'>;
  readonly rejections: client.Counter<'reason'>;
  readonly sessions: client.Gauge<'listener'>;
  readonly authFailures: client.Counter<'reason'>;
  readonly configReloads: client.Counter<'result'>;
  readonly spoolWriteSeconds: client.Histogram;
  readonly handoffMessages: client.Counter<'direction'>;
  readonly suppressionAdditions: client.Counter;
  readonly suppressionRefusals: client.Counter<'action'>;
  readonly reports: client.Counter<'kind' | 'result'>;
  readonly senderDomainReports: client.Counter<'sender_domain' | 'type'>;
  readonly unsubscribeHeaders: client.Counter<'result'>;
  readonly unsubscribes: client.Counter<'via' | 'result'>;
  readonly trackingRequests: client.Counter<'kind' | 'client'>;

  /**
   * Every sender domain with a return path has its report counters from the start, at 0: a
   * rate over a counter that appears with its first complaint would miss that complaint.
   */
  exportReports(domains: readonly { domain: string; returnPath?: string | undefined; unsubscribe?: unknown; tracking?: unknown }[]): void {
    for (const d of domains) if (d.returnPath) for (const type of ['bounced', 'deferred', 'complained']) this.senderDomainReports.inc({ sender_domain: d.domain, type }, 0);
    for (const d of domains) if (d.unsubscribe) this.senderDomainReports.inc({ sender_domain: d.domain, type: 'unsubscribed' }, 0);
    for (const d of domains) if (d.tracking) for (const type of ['opened', 'clicked']) this.senderDomainReports.inc({ sender_domain: d.domain, type }, 0);
  }

  constructor() {
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, prefix: PREFIX + 'process_' });
    this.received = new client.Counter({ name: `${PREFIX}messages_received_total`, help: 'Messages accepted (answered 250 after DATA).', labelNames: ['listener'], registers });
    this.rejections = new client.Counter({ name: `${PREFIX}smtp_rejections_total`, help: 'SMTP commands refused, by reason.', labelNames: ['reason'], registers });
    this.sessions = new client.Gauge({ name: `${PREFIX}smtp_sessions`, help: 'Open SMTP sessions.', labelNames: ['listener'], registers });
    this.authFailures = new client.Counter({
      name: `${PREFIX}auth_failures_total`,
      help: 'Failed AUTH attempts by reason: bad_credentials (wrong password or unknown user, not told apart), locked_out (too many recent failures from the address or for the user), too_many_failures (the attempt that ended its session), authzid (asked to act as another user), busy (too many password checks waiting).',
      labelNames: ['reason'],
      registers,
    });
    // Every reason from the start, so rate() and alerts see the first failure.
    for (const reason of AUTH_FAILURE_REASONS) this.authFailures.inc({ reason }, 0);
    this.configReloads = new client.Counter({ name: `${PREFIX}config_reloads_total`, help: 'Config reloads by result.', labelNames: ['result'], registers });
    this.handoffMessages = new client.Counter({
      name: `${PREFIX}handoff_messages_total`,
      help: 'Messages handed between relays of a fleet when one stops: sent (taken by a peer), received (taken from a peer), left (no peer took it; it stays in the spool).',
      labelNames: ['direction'],
      registers,
    });
    this.spoolWriteSeconds = new client.Histogram({
      name: `${PREFIX}spool_write_seconds`,
      help: 'Time to make an accepted message durable (write, fsync file and directory).',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers,
    });
    this.reports = new client.Counter({
      name: `${PREFIX}reports_total`,
      help: 'Reports that reached a return path (a `bounces` listener): kind dsn, complaint or other; result taken (it named a message this fleet sent) or ignored.',
      labelNames: ['kind', 'result'],
      registers,
    });
    this.senderDomainReports = new client.Counter({
      name: `${PREFIX}sender_domain_reports_total`,
      help: 'What reports to the return paths said, per recipient and sender domain: bounced and deferred (DSNs after the 250), complained (feedback reports); and unsubscribed (one-click, the page or mailto). Complaint rate: complained over delivered.',
      labelNames: ['sender_domain', 'type'],
      registers,
    });
    this.unsubscribeHeaders = new client.Counter({
      name: `${PREFIX}unsubscribe_headers_total`,
      help: 'Mail from a sender domain with one-click unsubscribe, by what intake did: added (List-Unsubscribe and List-Unsubscribe-Post), has_own (the message had its own), several_recipients (a link names one recipient: none added).',
      labelNames: ['result'],
      registers,
    });
    this.unsubscribes = new client.Counter({
      name: `${PREFIX}unsubscribes_total`,
      help: 'Unsubscribe requests by way (one_click: the POST mailbox providers send; page: the button on the page a person opens; mailto: mail to unsubscribe@ a return path) and result (taken; refused: a token this fleet did not sign).',
      labelNames: ['via', 'result'],
      registers,
    });
    this.trackingRequests = new client.Counter({
      name: `${PREFIX}tracking_requests_total`,
      help: 'Requests for tracking links: kind open (the pixel) or click; client person, proxy (a mailbox provider fetching images: Apple Mail Privacy Protection, Gmail, Yahoo), scanner (HEAD, no User-Agent, a security gateway or a script), refused (a token this fleet did not sign).',
      labelNames: ['kind', 'client'],
      registers,
    });
    this.suppressionAdditions = new client.Counter({ name: `${PREFIX}suppression_additions_total`, help: 'Recipients put on the suppression list after a hard bounce.', registers });
    this.suppressionRefusals = new client.Counter({
      name: `${PREFIX}suppression_refusals_total`,
      help: 'Recipients not sent to because they are on the suppression list: refused at RCPT (action="refuse") or bounced without an attempt (action="bounce").',
      labelNames: ['action'],
      registers,
    });
  }
}

/** Metrics of the queue and delivery: they live where the queue runs (possibly a worker thread). */
export class QueueMetrics {
  readonly registry = new client.Registry();
  readonly deliveries: client.Counter<'result' | 'route' | 'provider'>;
  readonly notices: client.Counter<'result'>;
  readonly senderDomainDeliveries: client.Counter<'sender_domain' | 'result'>;
  readonly attemptSeconds: client.Histogram<'route'>;
  readonly residenceSeconds: client.Histogram;
  readonly dkimSignatures: client.Counter<'domain' | 'algorithm'>;
  readonly trackedMessages: client.Counter<'result'>;
  private readonly smarthostAuthFailures: client.Counter<'reason'>;
  private readonly smarthostAuthFailing: client.Gauge<'reason'>;
  private readonly smarthostAuthSuccesses: client.Counter;

  constructor(queue: () => QueueGauges) {
    const registers = [this.registry];
    new client.Gauge({
      name: `${PREFIX}queue_messages`,
      help: 'Messages in the queue by state (a message to several destinations counts once per destination).',
      labelNames: ['state'],
      registers,
      collect() {
        const q = queue();
        this.set({ state: 'ready' }, q.ready);
        this.set({ state: 'deferred' }, q.deferred);
        this.set({ state: 'inflight' }, q.inflight);
      },
    });
    new client.Gauge({
      name: `${PREFIX}queue_oldest_ready_seconds`,
      help: 'How long the oldest message that is due now has waited for delivery.',
      registers,
      collect() {
        this.set(queue().oldestReadySeconds);
      },
    });
    new client.Gauge({
      name: `${PREFIX}queue_overdue_seconds`,
      help: 'How far past its retry time the most overdue deferred message is; 0 normally: more means retries stopped.',
      registers,
      collect() {
        this.set(queue().overdueSeconds);
      },
    });
    this.deliveries = new client.Counter({
      name: `${PREFIX}deliveries_total`,
      help: "Delivery outcomes per recipient of the senders' mail (the relay's own notices are in notices_total, so rates here are the senders').",
      labelNames: ['result', 'route', 'provider'],
      registers,
    });
    this.senderDomainDeliveries = new client.Counter({
      name: `${PREFIX}sender_domain_deliveries_total`,
      help: "Delivery outcomes per recipient of the senders' mail, by the envelope sender's configured sender domain (`other` for the rest): bounce rates per sender domain.",
      labelNames: ['sender_domain', 'result'],
      registers,
    });
    this.notices = new client.Counter({
      name: `${PREFIX}notices_total`,
      help: "Delivery outcomes of the relay's own notices (DSNs and delay notices, from the null sender), per recipient.",
      labelNames: ['result'],
      registers,
    });
    this.attemptSeconds = new client.Histogram({
      name: `${PREFIX}delivery_attempt_seconds`,
      help: 'Time of one delivery attempt of one message (connection setup excluded).',
      labelNames: ['route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.trackedMessages = new client.Counter({
      name: `${PREFIX}tracked_messages_total`,
      help: 'Messages of sender domains with open and click tracking, rewritten before signing: rewritten (links or a pixel put in), unchanged (nothing to rewrite). Counted at each rewrite (after a restart a queued message is rewritten again).',
      labelNames: ['result'],
      registers,
    });
    this.dkimSignatures = new client.Counter({
      name: `${PREFIX}dkim_signatures_total`,
      help: 'DKIM signatures made, by signing domain (configured sender domains only) and algorithm.',
      labelNames: ['domain', 'algorithm'],
      registers,
    });
    this.smarthostAuthFailures = new client.Counter({
      name: `${PREFIX}smarthost_auth_failures_total`,
      help: 'Connections to the smarthost that could not authenticate, by reason (docs/providers.md: what each means and what to do). The mail waits.',
      labelNames: ['reason'],
      registers,
    });
    this.smarthostAuthFailing = new client.Gauge({
      name: `${PREFIX}smarthost_auth_failing`,
      help: '1 for the reason the last authentication to the smarthost failed; all 0 once one succeeds (the operator\'s SmarthostAuthenticated condition reads it).',
      labelNames: ['reason'],
      registers,
    });
    this.smarthostAuthSuccesses = new client.Counter({
      name: `${PREFIX}smarthost_auth_successes_total`,
      help: 'Connections to the smarthost that authenticated (or needed no authentication).',
      registers,
    });
    for (const reason of Object.keys(SMARTHOST_AUTH_REASONS)) {
      this.smarthostAuthFailures.inc({ reason }, 0);
      this.smarthostAuthFailing.set({ reason }, 0);
    }
    this.residenceSeconds = new client.Histogram({
      name: `${PREFIX}queue_residence_seconds`,
      help: 'Time from acceptance to the final outcome (delivered or bounced) per recipient.',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600, 14400, 86400, 432000],
      registers,
    });
  }

  /** A connection to the smarthost that got past AUTH (no reason), or one refused and why. */
  smarthostAuth(reason?: SmarthostAuthReason): void {
    for (const r of Object.keys(SMARTHOST_AUTH_REASONS)) this.smarthostAuthFailing.set({ reason: r }, r === reason ? 1 : 0);
    if (reason) this.smarthostAuthFailures.inc({ reason });
    else this.smarthostAuthSuccesses.inc();
  }
}

/** One exposition from the registries of both halves (in one thread or two). */
export async function exposition(parts: client.MetricObjectWithValues<client.MetricValue<string>>[][]): Promise<{ text: string; contentType: string }> {
  const merged = client.AggregatorRegistry.aggregate(parts);
  return { text: await merged.metrics(), contentType: merged.contentType };
}
