/**
 * The dashboard ConfigMap and the PrometheusRule the chart renders (templates/prometheusrule.yaml,
 * through the real helm binary): they render only when enabled; every alert expression parses and
 * names metrics a real relay or the operator exports (test/support/promql.ts); every alert has a
 * severity, a summary, a description and a runbook_url whose anchor is a heading of
 * docs/runbooks.md; the values steer them; helm lint --strict passes.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { beforeAll, expect, it } from 'vitest';
import YAML from 'yaml';
import { SMARTHOST_AUTH_REASONS } from '../relay/delivery/smarthost-auth.js';
import { describeHelm, runHelm } from './peers/helm.js';
import { analyse, checkExpr, exportedMetrics, type Exported } from './support/promql.js';

const root = path.resolve(import.meta.dirname, '..');
const CHART = path.join(root, 'charts/mailfleet');
const DASHBOARD_FILE = path.join(CHART, 'dashboards/mailfleet.json');
const RUNBOOKS_FILE = path.join(root, 'docs/runbooks.md');
const RELEASE = 'mf';
const NS = 'mailfleet-system';
const FULLNAME = 'mf-mailfleet';
const RUNBOOK_BASE = 'https://github.com/mailfleet/mailfleet/blob/main/docs/runbooks.md';

// Loosely typed on purpose: these are JSON and YAML documents read field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

// ---------------------------------------------------------------------------------------
// Runbooks
// ---------------------------------------------------------------------------------------

/** GitHub's anchors of a Markdown file's headings. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = !fenced && /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const slug = m[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    anchors.add(n ? `${slug}-${n}` : slug);
  }
  return anchors;
}

const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Obj;
const runbookAnchors = headingAnchors(readFileSync(RUNBOOKS_FILE, 'utf8'));

let exported: Exported;

beforeAll(async () => {
  ({ exported } = await exportedMetrics());
});

describeHelm('the chart renders the dashboard ConfigMap and the PrometheusRule (real helm)', () => {
  async function template(args: string[]): Promise<Obj[]> {
    const r = await runHelm(['template', RELEASE, CHART, '--namespace', NS, ...args]);
    if (r.code !== 0) throw new Error(`helm template ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    expect(r.stdout).not.toMatch(/<no value>|%!/);
    const docs = YAML.parseAllDocuments(r.stdout);
    for (const d of docs) if (d.errors.length) throw new Error(`helm rendered invalid YAML: ${d.errors[0]?.message}`);
    return docs.map((d) => d.toJS() as Obj | null).filter((o): o is Obj => o !== null && typeof o === 'object');
  }
  const ofKind = (objs: Obj[], kind: string) => objs.filter((o) => o.kind === kind);
  const ENABLED = ['--set', 'prometheusRule.enabled=true', '--set', 'metrics.serviceMonitor.enabled=true'];
  const rulesOf = (objs: Obj[]): Obj[] => {
    const [rule, ...more] = ofKind(objs, 'PrometheusRule');
    expect(more).toEqual([]);
    return (rule!.spec.groups as Obj[]).flatMap((g) => g.rules as Obj[]);
  };

  it('renders neither with the default values', async () => {
    const objs = await template([]);
    expect(ofKind(objs, 'ConfigMap')).toEqual([]);
    expect(ofKind(objs, 'PrometheusRule')).toEqual([]);
  });

  it('dashboards.enabled: a ConfigMap with the grafana_dashboard label holding the dashboard JSON', async () => {
    const objs = await template(['--set', 'dashboards.enabled=true']);
    const [cm, ...more] = ofKind(objs, 'ConfigMap');
    expect(more).toEqual([]);
    new ConfigMap(cm as never).validate();
    expect(cm!.metadata.name).toBe(`${FULLNAME}-dashboard`);
    expect(cm!.metadata.namespace).toBe(NS);
    expect(cm!.metadata.labels).toMatchObject({ grafana_dashboard: '1', 'app.kubernetes.io/instance': RELEASE, 'app.kubernetes.io/managed-by': 'Helm' });
    expect(Object.keys(cm!.data)).toEqual(['mailfleet.json']);
    expect(JSON.parse(cm!.data['mailfleet.json'] as string)).toEqual(dashboard);
    // Nothing else appears with it.
    expect(ofKind(objs, 'PrometheusRule')).toEqual([]);
  });

  it('dashboards: the label, its value, the namespace and annotations follow the values', async () => {
    const objs = await template(['--set', 'dashboards.enabled=true', '--set', 'dashboards.label=mail_dashboards', '--set-string', 'dashboards.labelValue=yes', '--set', 'dashboards.namespace=monitoring', '--set', 'dashboards.annotations.grafana_folder=Mail']);
    const [cm] = ofKind(objs, 'ConfigMap');
    expect(cm!.metadata.namespace).toBe('monitoring');
    expect(cm!.metadata.labels.mail_dashboards).toBe('yes');
    expect(cm!.metadata.labels.grafana_dashboard).toBeUndefined();
    expect(cm!.metadata.annotations).toEqual({ grafana_folder: 'Mail' });
  });

  it('prometheusRule.enabled: every expression parses and names metrics the relay or the operator exports', async () => {
    const objs = await template(ENABLED);
    const [rule] = ofKind(objs, 'PrometheusRule');
    expect(rule!.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(rule!.metadata).toMatchObject({ name: FULLNAME, namespace: NS });
    const groups = rule!.spec.groups as Obj[];
    expect(groups.map((g) => g.name)).toEqual(['mailfleet-relay', 'mailfleet-senderdomain', 'mailfleet-operator']);
    const rules = rulesOf(objs);
    expect(rules.map((r) => r.alert)).toEqual([
      'MailfleetBacklogGrowing',
      'MailfleetOldestMessageTooOld',
      'MailfleetRetriesStalled',
      'MailfleetBounceRateHigh',
      'MailfleetComplaintRateHigh',
      'MailfleetComplaintRateHigh',
      'MailfleetProviderDeferralSpike',
      'MailfleetSmarthostAuthFailing',
      'MailfleetWebhookBacklog',
      'MailfleetWebhookEventsDropped',
      'MailfleetDkimRotationStuck',
      'MailfleetDnsRecordsNotVerified',
      'MailfleetRelayPodsNotReady',
      'MailfleetOperatorReconcileErrors',
      'MailfleetOperatorNoLeader',
    ]);
    const problems: string[] = [];
    for (const r of rules) {
      if (typeof r.expr !== 'string') problems.push(`${r.alert}: expr is not a string`);
      if (/\$[A-Za-z_{]|\[\[/.test(r.expr as string)) problems.push(`${r.alert}: a Grafana variable in a rule`);
      for (const p of checkExpr(r.expr as string, exported)) problems.push(`${r.alert}: ${p}\n${r.expr}`);
      // The PrometheusRule CRD's pattern for a duration (units from the largest down).
      if (!/^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/.test(r.for as string) || !r.for) problems.push(`${r.alert}: for ${r.for} is not a Prometheus duration`);
      if (Object.keys(r).some((k) => !['alert', 'expr', 'for', 'labels', 'annotations'].includes(k))) problems.push(`${r.alert}: unexpected fields ${Object.keys(r).join(',')}`);
    }
    expect(problems).toEqual([]);
  });

  it('every alert has a severity, a summary, a description and a runbook_url to a section of docs/runbooks.md', async () => {
    const rules = rulesOf(await template(ENABLED));
    const problems: string[] = [];
    for (const r of rules) {
      if (!['critical', 'warning', 'info'].includes(r.labels?.severity as string)) problems.push(`${r.alert}: severity ${r.labels?.severity}`);
      for (const a of ['summary', 'description']) {
        const text = r.annotations?.[a] as string | undefined;
        if (!text || text.length < 20) problems.push(`${r.alert}: no ${a}`);
        else if (text.split('{{').length !== text.split('}}').length) problems.push(`${r.alert}: unbalanced template in ${a}`);
        // $labels.X must be a label the alert has: one the expression groups by or adds.
        const labels = analyse(r.expr as string).outputLabels;
        for (const [, l] of (text ?? '').matchAll(/\$labels\.(\w+)/g)) if (!labels.has(l!)) problems.push(`${r.alert}: ${a} uses $labels.${l}, which the expression does not keep`);
      }
      const url = r.annotations?.runbook_url as string | undefined;
      const [base, anchor] = (url ?? '').split('#');
      if (base !== RUNBOOK_BASE) problems.push(`${r.alert}: runbook_url ${url} is not under ${RUNBOOK_BASE}`);
      if (anchor !== (r.alert as string).toLowerCase()) problems.push(`${r.alert}: runbook anchor ${anchor} is not the alert's name`);
      if (!anchor || !runbookAnchors.has(anchor)) problems.push(`${r.alert}: docs/runbooks.md has no heading for #${anchor}`);
    }
    expect(problems).toEqual([]);
  });

  it("MailfleetSmarthostAuthFailing's description says what to do for every reason the relay reports, in the relay's own words", async () => {
    const byName = Object.fromEntries(rulesOf(await template(ENABLED)).map((r) => [r.alert as string, r])) as Obj;
    const description = byName.MailfleetSmarthostAuthFailing.annotations.description as string;
    const named = [...description.matchAll(/eq \$labels\.reason "(\w+)"/g)].map((m) => m[1]);
    expect(named.sort()).toEqual(Object.keys(SMARTHOST_AUTH_REASONS).sort());
    for (const [reason, { todo }] of Object.entries(SMARTHOST_AUTH_REASONS)) {
      expect(description, reason).toContain(`eq $labels.reason "${reason}" }}${todo} {{`);
    }
  });

  it("thresholds, durations, severities, labels and the runbook base follow the values; a group with every alert off is left out", async () => {
    const objs = await template([
      ...ENABLED,
      '--set', 'prometheusRule.rules.bounceRateHigh.ratio=0.2',
      '--set', 'prometheusRule.rules.bounceRateHigh.window=1h',
      '--set', 'prometheusRule.rules.oldestMessageTooOld.seconds=600',
      '--set', 'prometheusRule.rules.oldestMessageTooOld.severity=warning',
      '--set', 'prometheusRule.rules.retriesStalled.seconds=900',
      '--set', 'prometheusRule.rules.retriesStalled.for=2m',
      '--set', 'prometheusRule.rules.backlogGrowing.for=30m',
      '--set', 'prometheusRule.rules.smarthostAuthFailing.window=3h',
      '--set', 'prometheusRule.rules.smarthostAuthFailing.severity=warning',
      '--set', 'prometheusRule.rules.webhookBacklog.seconds=1800',
      '--set', 'prometheusRule.rules.webhookEventsDropped.window=6h',
      '--set', 'prometheusRule.rules.dkimRotationStuck.enabled=false',
      '--set', 'prometheusRule.rules.dnsRecordsNotVerified.enabled=false',
      '--set', 'prometheusRule.alertLabels.team=mail',
      '--set', 'prometheusRule.labels.release=kube-prometheus-stack',
      '--set', 'prometheusRule.namespace=monitoring',
      '--set', 'prometheusRule.runbookBaseUrl=https://wiki.example.test/mailfleet/runbooks',
      '--set-string', 'prometheusRule.operatorSelector=job="mailfleet-operator"',
    ]);
    const [rule] = ofKind(objs, 'PrometheusRule');
    expect(rule!.metadata.namespace).toBe('monitoring');
    expect(rule!.metadata.labels.release).toBe('kube-prometheus-stack');
    expect((rule!.spec.groups as Obj[]).map((g) => g.name)).toEqual(['mailfleet-relay', 'mailfleet-operator']);
    const byName = Object.fromEntries(rulesOf(objs).map((r) => [r.alert as string, r])) as Obj;
    expect(byName.MailfleetBounceRateHigh.expr).toMatch(/\) > 0\.2\n/);
    expect(byName.MailfleetBounceRateHigh.expr).toContain('[1h]');
    expect(byName.MailfleetOldestMessageTooOld.expr).toContain('> 600,');
    expect(byName.MailfleetOldestMessageTooOld.labels.severity).toBe('warning');
    expect(byName.MailfleetRetriesStalled.expr).toContain('max by (namespace, service) (mailfleet_relay_queue_overdue_seconds) > 900,');
    expect(byName.MailfleetRetriesStalled.for).toBe('2m');
    expect(byName.MailfleetBacklogGrowing.for).toBe('30m');
    expect(byName.MailfleetSmarthostAuthFailing.expr).toContain('increase(mailfleet_relay_smarthost_auth_failures_total[3h]) > 0');
    expect(byName.MailfleetSmarthostAuthFailing.labels.severity).toBe('warning');
    expect(byName.MailfleetWebhookBacklog.expr).toContain('(mailfleet_relay_webhook_oldest_event_age_seconds) > 1800,');
    expect(byName.MailfleetWebhookEventsDropped.expr).toContain('increase(mailfleet_relay_webhook_events_dropped_total[6h])');
    expect(byName.MailfleetWebhookEventsDropped.expr).toContain('offset 6h');
    expect(byName.MailfleetDkimRotationStuck).toBeUndefined();
    expect(byName.MailfleetOperatorNoLeader.expr).toBe('max(mailfleet_operator_leader{job="mailfleet-operator"}) == 0\nor\nabsent(mailfleet_operator_leader{job="mailfleet-operator"})');
    for (const r of Object.values(byName)) {
      expect(r.labels.team, r.alert).toBe('mail');
      expect(r.annotations.runbook_url, r.alert).toBe(`https://wiki.example.test/mailfleet/runbooks#${(r.alert as string).toLowerCase()}`);
      expect(checkExpr(r.expr as string, exported), r.alert).toEqual([]);
    }
  });

  it("the operator's alerts select this release's operator metrics (the ServiceMonitor's job and namespace), which must be scraped", async () => {
    const byName = Object.fromEntries(rulesOf(await template(ENABLED)).map((r) => [r.alert as string, r])) as Obj;
    for (const alert of ['MailfleetOperatorNoLeader', 'MailfleetOperatorReconcileErrors']) {
      for (const s of analyse(byName[alert].expr as string).selectors) {
        expect(s.matchers, alert).toEqual(expect.arrayContaining([{ label: 'job', op: '=', value: `${FULLNAME}-metrics` }, { label: 'namespace', op: '=', value: NS }]));
      }
    }
    // The ServiceMonitor gives exactly those labels and keeps the objects' own namespace label.
    const objs = await template(ENABLED);
    const [sm] = ofKind(objs, 'ServiceMonitor');
    const [svc] = ofKind(objs, 'Service');
    expect(svc!.metadata.name).toBe(`${FULLNAME}-metrics`);
    expect(sm!.metadata.namespace).toBe(NS);
    expect(sm!.spec.jobLabel).toBeUndefined();
    expect(sm!.spec.endpoints[0].honorLabels).toBe(true);
    // Without a scrape of the operator the NoLeader alert would always fire: refused.
    const r = await runHelm(['template', RELEASE, CHART, '--set', 'prometheusRule.enabled=true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('prometheusRule.enabled needs the operator\'s metrics scraped');
  });

  it.each([
    { what: 'a misspelt dashboards key', args: ['--set', 'dashboards.enable=true'], field: "additional properties 'enable' not allowed" },
    { what: 'a misspelt alert', args: ['--set', 'prometheusRule.rules.bounceRate.ratio=0.1'], field: "additional properties 'bounceRate' not allowed" },
    { what: 'a misspelt threshold', args: ['--set', 'prometheusRule.rules.bounceRateHigh.threshold=0.1'], field: "additional properties 'threshold' not allowed" },
    { what: 'a ratio above 1', args: ['--set', 'prometheusRule.rules.bounceRateHigh.ratio=5'], field: '/prometheusRule/rules/bounceRateHigh/ratio' },
    { what: 'a duration Prometheus cannot read', args: ['--set', 'prometheusRule.rules.backlogGrowing.for=15min'], field: '/prometheusRule/rules/backlogGrowing/for' },
    { what: 'a duration with its units out of order', args: ['--set', 'prometheusRule.rules.bounceRateHigh.window=30m1h'], field: '/prometheusRule/rules/bounceRateHigh/window' },
    { what: 'a runbook URL with an anchor', args: ['--set', 'prometheusRule.runbookBaseUrl=https://x.test/r.md#top'], field: '/prometheusRule/runbookBaseUrl' },
  ])('values.schema.json rejects $what', async ({ args, field }) => {
    const r = await runHelm(['template', RELEASE, CHART, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("values don't meet the specifications of the schema");
    expect(r.stderr).toContain(field);
  });

  it('helm lint --strict passes with the dashboard and the alerts enabled', async () => {
    const r = await runHelm(['lint', '--strict', CHART, '--set', 'dashboards.enabled=true', ...ENABLED]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
  });
});
