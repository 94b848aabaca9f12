/**
 * The chart's alerts and the Grafana dashboard judged by the real tools (Debian's `prometheus`
 * package, 2.42: promtool and the server), where observability-dashboard.test.ts and
 * observability-alerts.test.ts only parse them.
 *
 * - `promtool check rules` accepts the rule groups `helm template` renders.
 * - `promtool test rules`, once per alert, on test/fixtures/prometheus/alerts.test.yaml: every
 *   alert fires on series made for it (labels and annotations as Alertmanager gets them) and
 *   stays quiet where it must; the fixture must have both kinds of case for every alert.
 * - A real Prometheus scrapes a real relay (with traffic: delivered, bounced, deferred, DKIM,
 *   a refused AUTH, a suppressed recipient, a reload, events to a webhook) and the operator's metrics endpoint, loads
 *   the rendered rules and evaluates them without error; every dashboard query (Grafana's
 *   variables replaced) is accepted, and those over series a relay with traffic has return data;
 *   the dashboard's variables find the scraped namespace and MailRelay; `promtool check metrics`
 *   finds nothing in the relay's and the operator's own metrics.
 * - A second Prometheus scrapes a relay whose smarthost refuses its password as Microsoft 365
 *   does after Basic authentication (535 5.7.139): MailfleetSmarthostAuthFailing's expression
 *   names the MailRelay, the reason and the pod count, the alert goes pending, and the
 *   dashboard's smarthost panels show the reason.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import YAML from 'yaml';
import { OperatorMetrics, startOperatorHttp } from '../operator/metrics.js';
import { generateDkimKey } from '../relay/dkim-keys.js';
import { describePeer } from './peers/availability.js';
import { describeHelm, runHelm } from './peers/helm.js';
import { promtool, startPrometheus, type Prometheus, type Sample } from './peers/prometheus.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { selfSignedCert, type TestCert } from './peers/tls.js';
import { waitUntil } from './peers/wait.js';
import { startWebhookReceiver, type WebhookReceiver } from './peers/webhook-receiver.js';
import { startXOAuth2Smarthost, type XOAuth2Smarthost } from './peers/xoauth2-smarthost.js';
import { allPanels, dashboardQueries, SAMPLES, substitute } from './support/dashboard.js';
import { startTestRelay, type TestRelay } from './support/relay.js';
import { SmtpTalk, submit } from './support/smtp-talk.js';

const root = path.resolve(import.meta.dirname, '..');
const CHART = path.join(root, 'charts/mailfleet');
const FIXTURE = path.join(root, 'test/fixtures/prometheus/alerts.test.yaml');
const dashboard = JSON.parse(fs.readFileSync(path.join(CHART, 'dashboards/mailfleet.json'), 'utf8')) as Obj;
// The release the fixture's expectations are written for (runbook URLs, the operator's job).
const RELEASE = 'mf';
const NS = 'mailfleet-system';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

/** The chart's rule groups with the default values, as `helm template` renders them. */
async function renderedRuleGroups(): Promise<Obj[]> {
  const r = await runHelm(['template', RELEASE, CHART, '--namespace', NS, '--set', 'prometheusRule.enabled=true', '--set', 'metrics.serviceMonitor.enabled=true', '--show-only', 'templates/prometheusrule.yaml']);
  if (r.code !== 0) throw new Error(`helm template exited ${r.code}: ${r.stderr}`);
  const rule = YAML.parse(r.stdout) as Obj;
  expect(rule.kind).toBe('PrometheusRule');
  return rule.spec.groups as Obj[];
}

/** Seconds of a Prometheus duration (1d, 15m, 1h30m). */
function seconds(duration: string): number {
  const units: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
  const parts = [...duration.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)];
  if (parts.map((p) => p[0]).join('') !== duration) throw new Error(`not a duration: ${duration}`);
  return parts.reduce((sum, [, n, unit]) => sum + Number(n) * units[unit!]!, 0);
}

describePeer('promtool and Prometheus 2.42', ['promtool', 'prometheus'], () => {
  describeHelm("judge the chart's PrometheusRule (rendered by real helm)", () => {
    let dir: string;
    let groups: Obj[];
    let alerts: Obj[];
    const fixture = YAML.parse(fs.readFileSync(FIXTURE, 'utf8')) as Obj;

    beforeAll(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-promtool-'));
      groups = await renderedRuleGroups();
      alerts = groups.flatMap((g) => g.rules as Obj[]);
      fs.writeFileSync(path.join(dir, 'rules.yaml'), YAML.stringify({ groups }));
    });
    afterAll(() => {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it('promtool check rules accepts every rule group', async () => {
      const r = await promtool(['check', 'rules', 'rules.yaml'], { cwd: dir });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain(`SUCCESS: ${alerts.length} rules found`);
      expect(alerts.length).toBe(15); // MailfleetComplaintRateHigh is two rules: warning and critical
    });

    it('the unit tests have, for every alert, a case where it fires and one where it must not (past its for)', () => {
      const problems: string[] = [];
      const cases = (fixture.tests as Obj[]).flatMap((t) => (t.alert_rule_test as Obj[]).map((c): Obj => ({ test: t.name as string, ...c })));
      for (const a of alerts) {
        const mine = cases.filter((c) => c.alertname === a.alert);
        if (!mine.some((c) => (c.exp_alerts as Obj[]).length > 0)) problems.push(`${a.alert}: no case where it fires`);
        if (!mine.some((c) => (c.exp_alerts as Obj[]).length === 0 && seconds(c.eval_time as string) >= seconds(a.for as string))) problems.push(`${a.alert}: no case where it stays quiet at least ${a.for} in`);
      }
      for (const c of cases) if (!alerts.some((a) => a.alert === c.alertname)) problems.push(`${c.test}: no alert ${c.alertname} in the chart`);
      expect(problems).toEqual([]);
    });

    it.each(['MailfleetBacklogGrowing', 'MailfleetOldestMessageTooOld', 'MailfleetRetriesStalled', 'MailfleetBounceRateHigh', 'MailfleetComplaintRateHigh', 'MailfleetProviderDeferralSpike', 'MailfleetSmarthostAuthFailing', 'MailfleetWebhookBacklog', 'MailfleetWebhookEventsDropped', 'MailfleetDkimRotationStuck', 'MailfleetDnsRecordsNotVerified', 'MailfleetRelayPodsNotReady', 'MailfleetOperatorReconcileErrors', 'MailfleetOperatorNoLeader'])(
      'promtool test rules: %s fires with its labels and annotations, and only when it should',
      async (alert) => {
        expect(alerts.map((a) => a.alert)).toContain(alert);
        // Only this alert's cases, so a failure names it (and one slow case does not run ten times).
        const tests = (fixture.tests as Obj[])
          .map((t) => ({ ...t, alert_rule_test: (t.alert_rule_test as Obj[]).filter((c) => c.alertname === alert) }))
          .filter((t) => t.alert_rule_test.length > 0);
        const file = `${alert}.test.yaml`;
        fs.writeFileSync(path.join(dir, file), YAML.stringify({ ...fixture, tests }));
        const r = await promtool(['test', 'rules', file], { cwd: dir });
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(r.stdout).toContain('SUCCESS');
      },
    );
  });

  describeHelm('a real Prometheus scraping a relay with traffic and the operator', () => {
    const DKIM_DOMAIN = 'example.test';
    // The MailRelay "outbound" in namespace "mail": its pods are the targets of the headless
    // Service outbound-pods; the operator is the chart's ServiceMonitor's job in its namespace.
    const RELAY_LABELS = { namespace: 'mail', service: 'outbound-pods', pod: 'outbound-6b7c9-abcde' };
    let sink: ScriptedSink | undefined;
    let relay: TestRelay | undefined;
    let operatorHttp: { close(): Promise<void> } | undefined;
    let operatorPort: number;
    let prometheus: Prometheus | undefined;
    let keyDir: string | undefined;
    let receiver: WebhookReceiver | undefined;
    const WEBHOOK_KEY = 'a-webhook-signing-key-of-at-least-32-characters';
    let groups: Obj[];
    let alerts: Obj[];

    const values = async (expr: string): Promise<Sample[]> => {
      const a = await prometheus!.query(expr);
      if (a.status !== 'success') throw new Error(`${expr}: ${a.errorType} ${a.error}`);
      return a.data!.result;
    };
    const scalar = async (expr: string): Promise<number> => Number((await values(expr))[0]?.value[1] ?? NaN);

    /** One round of traffic: delivered, bounced and deferred recipients, a refused AUTH, a reload. */
    async function traffic(round: number): Promise<void> {
      const msg = `From: App <app@${DKIM_DOMAIN}>\r\nTo: users@dest.test\r\nSubject: round ${round}\r\nMessage-ID: <round-${round}@${DKIM_DOMAIN}>\r\n\r\nHello.\r\n`;
      const reply = await submit(relay!.ports.open!, `app@${DKIM_DOMAIN}`, [`ok${round}@dest.test`, `bounce${round}@dest.test`, `defer${round}@dest.test`], msg);
      expect(reply).toMatch(/^250/);
      if (round > 1) {
        // The first round's bounced address is now on the suppression list.
        const refused = await submit(relay!.ports.open!, `app@${DKIM_DOMAIN}`, ['bounce1@dest.test'], msg);
        expect(refused).toMatch(/^5/);
      }
      const { talk } = await SmtpTalk.connect(relay!.ports.submission!);
      try {
        await talk.send('EHLO client.test');
        await talk.starttls();
        await talk.send('EHLO client.test');
        expect(await talk.send(`AUTH PLAIN ${Buffer.from(`\0${relay!.user}\0wrong-password`).toString('base64')}`)).toMatch(/^535/);
      } finally {
        await talk.quit();
      }
      expect(await relay!.reload()).toBe(true);
    }

    beforeAll(async () => {
      groups = await renderedRuleGroups();
      alerts = groups.flatMap((g) => g.rules as Obj[]);
      sink = await startScriptedSink({
        replies: ({ rcpt }) => (rcpt.startsWith('bounce') ? { code: 550, message: '5.1.1 no such user' } : rcpt.startsWith('defer') ? { code: 451, message: '4.7.1 try again later' } : undefined),
      });
      keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-prom-dkim-'));
      const keyFile = path.join(keyDir, 'mf1.pem');
      fs.writeFileSync(keyFile, generateDkimKey('ed25519-sha256').privateKeyPem);
      // A webhook that takes the events, so the webhook metrics (and their panels) have series.
      fs.writeFileSync(path.join(keyDir, 'webhook-key'), WEBHOOK_KEY);
      fs.writeFileSync(path.join(keyDir, 'return-path-key'), 'a-return-path-key-of-at-least-32-characters');
      receiver = await startWebhookReceiver({ keys: { k1: WEBHOOK_KEY } });
      relay = await startTestRelay({
        // With a return path, unsubscribe and tracking, so the complaint, unsubscribe, open and click rates have their series (at 0) from the start.
        senderDomains: [{ domain: DKIM_DOMAIN, dkim: { keys: [{ selector: 'mf1', privateKeyFile: keyFile }] }, returnPath: `bounces.${DKIM_DOMAIN}`, unsubscribe: { url: 'https://links.example.test' }, tracking: { url: 'https://t.example.test' } }],
        bounces: { keyFile: path.join(keyDir, 'return-path-key') },
        links: { keyFile: path.join(keyDir, 'return-path-key'), port: 0 },
        delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } },
        retry: { minBackoff: '1h', maxBackoff: '2h' },
        events: { webhooks: [{ name: 'app', url: receiver.url, signingKeys: [{ id: 'k1', secretFile: path.join(keyDir, 'webhook-key') }] }] },
      });
      // The operator's metrics endpoint as a freshly started operator serves it (not leading, no objects yet).
      const op = await startOperatorHttp({ metricsPort: 0, healthPort: 0, metrics: new OperatorMetrics(), ready: () => ({ ok: true }) });
      operatorHttp = op;
      operatorPort = op.metricsPort;
      prometheus = await startPrometheus({
        targets: [
          { job: 'relay', port: relay.httpPort, labels: RELAY_LABELS },
          { job: `${RELEASE}-mailfleet-metrics`, port: op.metricsPort, labels: { namespace: NS, pod: `${RELEASE}-mailfleet-5f8d7-xyz12` }, honorLabels: true },
        ],
        ruleFiles: { 'rules.yaml': { groups } },
      });
      await prometheus.waitForTargetsUp();
      // Two rounds, each seen by a scrape, so rates over the series the traffic makes are above zero.
      for (const round of [1, 2]) {
        await traffic(round);
        await waitUntil(async () => (await scalar('sum(mailfleet_relay_deliveries_total{result="delivered"})')) >= round && (await scalar('sum(mailfleet_relay_deliveries_total{result="bounced"})')) >= round, {
          timeoutMs: 60_000,
          intervalMs: 200,
          what: `Prometheus to scrape round ${round}'s deliveries`,
        });
      }
      // Two more scrapes, so the series that appeared last (the suppression refusal) have a range.
      const after = Date.now() / 1000;
      await waitUntil(async () => (await scalar('min(timestamp(up))')) > after + 2, { timeoutMs: 60_000, intervalMs: 200, what: 'two more scrapes' });
      // Every rule evaluated at least once since.
      await waitUntil(
        async () => {
          const r = await prometheus!.api<{ groups: { rules: { health: string }[] }[] }>('rules');
          const rules = r.data?.groups.flatMap((g) => g.rules) ?? [];
          return rules.length === alerts.length && rules.every((x) => x.health !== 'unknown');
        },
        { timeoutMs: 60_000, intervalMs: 200, what: 'Prometheus to evaluate every rule' },
      );
    }, 240_000);

    afterAll(async () => {
      await prometheus?.stop();
      await operatorHttp?.close();
      await relay?.stop();
      await receiver?.stop();
      await sink?.stop();
      if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
    }, 60_000);

    it("promtool check metrics finds nothing in mailfleet's own metrics (relay with traffic, operator)", async () => {
      const operatorText = await (await fetch(`http://127.0.0.1:${operatorPort}/metrics`)).text();
      const problems: string[] = [];
      for (const text of [await relay!.metricsText(), operatorText]) {
        const r = await promtool(['check', 'metrics'], { input: text });
        // prom-client's default Node.js gauges are named *_total (active handles etc.): not ours to rename.
        problems.push(...`${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() && !/^mailfleet_(relay|operator)_process_nodejs_active_\w+_total non-counter metrics should not have "_total" suffix$/.test(l)));
      }
      expect(problems).toEqual([]);
    });

    it('loads the rendered rules and evaluates every alert without error', async () => {
      const r = await prometheus!.api<{ groups: { name: string; rules: { name: string; type: string; health: string; lastError?: string }[] }[] }>('rules');
      expect(r.status).toBe('success');
      const rules = r.data!.groups.flatMap((g) => g.rules.map((x) => ({ group: g.name, ...x })));
      expect(rules.map((x) => `${x.group}/${x.name}`).sort()).toEqual(groups.flatMap((g) => (g.rules as Obj[]).map((a) => `${g.name}/${a.alert}`)).sort());
      expect(rules.filter((x) => x.health !== 'ok' || x.lastError)).toEqual([]);
    });

    it('every alert expression runs as a query; a healthy relay with traffic raises no relay alert', async () => {
      const problems: string[] = [];
      for (const a of alerts) {
        const answer = await prometheus!.query(a.expr as string);
        if (answer.status !== 'success') problems.push(`${a.alert}: ${answer.errorType} ${answer.error}`);
        else if (a.alert !== 'MailfleetOperatorNoLeader' && answer.data!.result.length > 0) problems.push(`${a.alert}: fires on a healthy relay: ${JSON.stringify(answer.data!.result)}`);
      }
      expect(problems).toEqual([]);
      // The operator serving its metrics but not leading: the alert sees it by its job and namespace.
      expect(await values(alerts.find((a) => a.alert === 'MailfleetOperatorNoLeader')!.expr as string)).toEqual([expect.objectContaining({ value: [expect.any(Number), '0'] })]);
    });

    it("the dashboard's variables find the relay's namespace and MailRelay in the scraped labels", async () => {
      const vars = Object.fromEntries((dashboard.templating.list as Obj[]).map((v) => [v.name as string, v])) as Obj;
      // label_values(EXPR, label), as Grafana asks for it: the series API with match[].
      const labelValues = async (definition: string, values: Record<string, string>): Promise<string[]> => {
        const m = /^label_values\((.+),\s*(\w+)\)$/s.exec(definition);
        if (!m) throw new Error(`not label_values(EXPR, label): ${definition}`);
        const a = await prometheus!.api<Record<string, string>[]>('series', { 'match[]': substitute(m[1]!, values).expr });
        expect(a.status, a.error).toBe('success');
        return [...new Set(a.data!.map((s) => s[m[2]!]!))];
      };
      expect(await labelValues(vars.namespace.definition as string, {})).toEqual([RELAY_LABELS.namespace]);
      const services = await labelValues(vars.mailrelay.definition as string, { namespace: RELAY_LABELS.namespace });
      const regex = new RegExp((vars.mailrelay.regex as string).slice(1, -1));
      expect(services.map((s) => regex.exec(s)?.[1])).toEqual(['outbound']);
    });

    // Panels over series that exist only once the operator reconciles MailRelays and SenderDomains,
    // or once a reconcile or an API request happened (this operator has no cluster).
    const EMPTY_WITHOUT_A_CLUSTER = new Set([
      'Relay pods ready / desired',
      'Relay pods: desired and ready',
      'Autoscaler: desired replicas',
      'Scaling decisions',
      'Sender domains',
      'DKIM rotation: next key waiting for DNS',
      'DNS verified over time',
      'Reconciles by controller and result',
      'Reconcile duration',
      'Work queue depth',
      'Kubernetes API requests by verb',
    ]);

    it('every dashboard query is accepted by Prometheus, and returns data where a relay with traffic has the series', async () => {
      const queries = dashboardQueries(dashboard);
      expect(queries.length).toBeGreaterThan(40);
      const titles = new Set(allPanels(dashboard).map((p) => p.title as string));
      for (const t of EMPTY_WITHOUT_A_CLUSTER) expect(titles, `EMPTY_WITHOUT_A_CLUSTER names a panel the dashboard no longer has: ${t}`).toContain(t);
      const problems: string[] = [];
      const sample = { ...SAMPLES[0]!, namespace: RELAY_LABELS.namespace, mailrelay: 'outbound' };
      const multi = { ...SAMPLES[1]!, namespace: `(${RELAY_LABELS.namespace}|billing)`, mailrelay: '(outbound|bulk)' };
      for (const q of queries) {
        for (const values of [sample, multi]) {
          const { expr, unknown } = substitute(q.expr, values);
          if (unknown.length) problems.push(`${q.where}: unknown variables ${unknown.join(', ')}`);
          const answer = await prometheus!.query(expr);
          if (answer.status !== 'success') {
            problems.push(`${q.where}: ${answer.errorType}: ${answer.error}\n    ${expr}`);
            continue;
          }
          const mustHaveData = q.panel !== undefined && !EMPTY_WITHOUT_A_CLUSTER.has(q.panel.title as string);
          if (mustHaveData && answer.data!.result.length === 0) problems.push(`${q.where}: no data\n    ${expr}`);
          if (mustHaveData && answer.data!.result.some((s) => s.value[1] === 'NaN')) problems.push(`${q.where}: NaN\n    ${expr}`);
        }
      }
      expect(problems).toEqual([]);
    });
  });
  describeHelm('MailfleetSmarthostAuthFailing on a real relay that Microsoft 365 refuses Basic authentication', () => {
    // The MailRelay "m365" in namespace "mail", still routed with a password to a smarthost that
    // answers it as Exchange Online does once Basic authentication is off (535 5.7.139).
    const LABELS = { namespace: 'mail', service: 'm365-pods', pod: 'm365-7f9c8-qwert' };
    let cert: TestCert | undefined;
    let smarthost: XOAuth2Smarthost | undefined;
    let relay: TestRelay | undefined;
    let prometheus: Prometheus | undefined;
    let alert: Obj;

    const results = async (expr: string): Promise<Sample[]> => {
      const a = await prometheus!.query(expr);
      if (a.status !== 'success') throw new Error(`${expr}: ${a.errorType} ${a.error}`);
      return a.data!.result;
    };

    beforeAll(async () => {
      const groups = await renderedRuleGroups();
      alert = groups.flatMap((g) => g.rules as Obj[]).find((a) => a.alert === 'MailfleetSmarthostAuthFailing')!;
      cert = await selfSignedCert('127.0.0.1');
      // Refuses every user name and password before it would look at a token: no keys needed.
      smarthost = await startXOAuth2Smarthost({ jwks: { keys: [] }, issuer: 'https://login.test', audience: 'https://outlook.office365.com', mailbox: 'relay@contoso.test', key: cert.key, cert: cert.cert });
      const credentials = path.join(cert.dir, 'upstream');
      fs.writeFileSync(credentials, 'relay@contoso.test:an-old-password\n');
      relay = await startTestRelay({
        delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: smarthost.port, tls: 'starttls', credentialsFile: credentials }, tlsPolicy: { caFile: cert.certFile } },
        retry: { minBackoff: '1h', maxBackoff: '2h' },
      });
      prometheus = await startPrometheus({ targets: [{ job: 'relay', port: relay.httpPort, labels: LABELS }], ruleFiles: { 'rules.yaml': { groups } } });
      await prometheus.waitForTargetsUp();
      // Scraped before the failure, so the counter's increase starts from its pre-initialised 0.
      expect(await submit(relay.ports.open!, 'app@contoso.test', ['r@dest.test'], 'Subject: m365\r\nMessage-ID: <m365@contoso.test>\r\n\r\nHello.\r\n')).toMatch(/^250/);
      await waitUntil(async () => (await results(alert.expr as string)).length > 0, { timeoutMs: 60_000, intervalMs: 200, what: 'the alert expression to see the refused authentication' });
    }, 120_000);

    afterAll(async () => {
      await prometheus?.stop();
      await relay?.stop();
      await smarthost?.close();
      cert?.cleanup();
    }, 60_000);

    it('the expression names the MailRelay, the reason and one failing pod; Prometheus holds the alert pending for its 15m', async () => {
      expect(smarthost!.auths).toEqual([expect.objectContaining({ method: 'PLAIN', refused: expect.stringContaining('5.7.139') })]);
      expect((await results(alert.expr as string)).map((s) => ({ ...s.metric, value: s.value[1] }))).toEqual([{ namespace: 'mail', service: 'm365-pods', reason: 'basic_auth_disabled', mailrelay: 'm365', value: '1' }]);
      await waitUntil(
        async () => {
          const a = await prometheus!.api<{ alerts: { labels: Record<string, string>; state: string }[] }>('alerts');
          return (a.data?.alerts ?? []).some((x) => x.labels.alertname === 'MailfleetSmarthostAuthFailing' && x.labels.reason === 'basic_auth_disabled' && x.labels.mailrelay === 'm365' && x.state === 'pending');
        },
        { timeoutMs: 30_000, intervalMs: 200, what: 'Prometheus to hold MailfleetSmarthostAuthFailing pending' },
      );
    });

    it("the dashboard's smarthost panels show the reason for this MailRelay", async () => {
      const panels = allPanels(dashboard).filter((p) => /smarthost/i.test(p.title as string));
      expect(panels.map((p) => p.title)).toEqual(['Smarthost authentication failures by reason', 'Relay pods failing to authenticate to the smarthost, by reason']);
      const failing = substitute(panels[1]!.targets[0].expr as string, { ...SAMPLES[0]!, namespace: 'mail', mailrelay: 'm365' }).expr;
      const byReason = Object.fromEntries((await results(failing)).map((s) => [s.metric.reason, s.value[1]]));
      expect(byReason).toMatchObject({ basic_auth_disabled: '1', token_client_rejected: '0', credentials_rejected: '0' });
    });
  });
});
