/**
 * Dashboards and alerts: the Grafana dashboard (charts/mailfleet/dashboards/mailfleet.json)
 * and the PrometheusRule the chart renders (templates/prometheusrule.yaml, through the real
 * helm binary).
 *
 * - Every PromQL expression parses with Prometheus's own grammar (@prometheus-io/lezer-promql;
 *   any error node is a parse error), after Grafana's variables are replaced by sample values.
 * - Every metric an expression names is one that a real relay (started in this process) or
 *   the operator's metrics registry exports: the names come from their expositions, not from
 *   a list here, so renaming a metric fails this suite. rate()/increase() must read counters
 *   (or a histogram's series) and deriv()/delta() gauges, as the expositions type them.
 * - Every alert has a severity, a summary, a description and a runbook_url whose anchor is a
 *   heading of docs/runbooks.md.
 * - The ConfigMap and the PrometheusRule render only when enabled; helm lint --strict passes.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { OperatorMetrics } from '../operator/metrics.js';
import { describeHelm, runHelm } from './peers/helm.js';
import { allPanels, dashboardQueries, SAMPLES, substitute } from './support/dashboard.js';
import { startTestRelay } from './support/relay.js';

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
// The metrics that really exist
// ---------------------------------------------------------------------------------------

type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
type Exported = Map<string, MetricType>;

/** Metric families and their types from a text exposition (`# TYPE name type` lines). */
function exportedFromText(text: string): Exported {
  const out: Exported = new Map();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1]!, m[2] as MetricType);
  return out;
}

interface Resolved {
  family: string;
  /** The type of the series the name selects: a histogram's _bucket, _sum and _count are counters. */
  seriesType: MetricType;
}

/** The exported family a series name belongs to, or undefined when nothing exports it. */
function resolveMetric(name: string, exported: Exported): Resolved | undefined {
  const type = exported.get(name);
  if (type) return { family: name, seriesType: type };
  const m = /^(.+)_(bucket|sum|count)$/.exec(name);
  if (!m) return undefined;
  const base = exported.get(m[1]!);
  if (base === 'histogram' || (base === 'summary' && m[2] !== 'bucket')) return { family: m[1]!, seriesType: 'counter' };
  return undefined;
}

// ---------------------------------------------------------------------------------------
// PromQL analysis with lezer-promql
// ---------------------------------------------------------------------------------------

type PromNode = ReturnType<typeof parser.parse>['topNode'];

interface Matcher {
  label: string;
  op: string;
  value: string;
}
interface Selector {
  metric?: string;
  matchers: Matcher[];
  /** The enclosing function when the selector is its (range) argument, e.g. rate. */
  fn?: string;
}
interface Analysis {
  errors: string[];
  selectors: Selector[];
  /** Labels the expression groups by (by (...)) or adds (label_replace's destination). */
  outputLabels: Set<string>;
}

/** Functions whose argument is a range of a counter. */
const COUNTER_FUNCTIONS = new Set(['rate', 'irate', 'increase', 'resets']);
/** Functions whose argument is a range of a gauge. */
const GAUGE_RANGE_FUNCTIONS = new Set(['deriv', 'delta', 'idelta', 'predict_linear']);
const RANGE_FUNCTIONS = new Set([...COUNTER_FUNCTIONS, ...GAUGE_RANGE_FUNCTIONS, 'changes', 'avg_over_time', 'min_over_time', 'max_over_time', 'sum_over_time', 'count_over_time', 'quantile_over_time', 'last_over_time', 'present_over_time', 'stddev_over_time', 'stdvar_over_time', 'absent_over_time']);

/** Nodes that wrap a selector with an `offset` or `@` modifier. */
const MODIFIERS = ['OffsetExpr', 'StepInvariantExpr'];
const unwrapModifiers = (n: PromNode): PromNode => (MODIFIERS.includes(n.name) && n.firstChild ? unwrapModifiers(n.firstChild) : n);
const unquote = (s: string) => (s.startsWith('`') ? s.slice(1, -1) : (JSON.parse(s) as string));
const children = (n: PromNode): PromNode[] => {
  const out: PromNode[] = [];
  for (let c = n.firstChild; c; c = c.nextSibling) out.push(c);
  return out;
};

function analyse(expr: string): Analysis {
  const tree = parser.parse(expr);
  const errors: string[] = [];
  const selectors: Selector[] = [];
  const outputLabels = new Set<string>();
  const text = (n: PromNode) => expr.slice(n.from, n.to);
  tree.iterate({
    enter: (ref) => {
      const n = ref.node;
      if (ref.type.isError) {
        errors.push(`parse error at ${ref.from}: ${JSON.stringify(expr.slice(Math.max(0, ref.from - 20), ref.from))} >>> ${JSON.stringify(expr.slice(ref.from, ref.from + 20))}`);
        return;
      }
      if (ref.name === 'GroupingLabels') for (const l of children(n)) outputLabels.add(text(l));
      if (ref.name === 'FunctionCall') {
        const id = n.getChild('FunctionIdentifier');
        const body = n.getChild('FunctionCallBody');
        if (!id || !body) return;
        const fn = text(id);
        const args = children(body);
        if (RANGE_FUNCTIONS.has(fn) && !['MatrixSelector', 'SubqueryExpr'].includes(args[0] ? unwrapModifiers(args[0]).name : '')) errors.push(`${fn}() needs a range vector, got ${args[0] ? text(args[0]) : 'nothing'}`);
        if (fn === 'label_replace' && args[1]?.name === 'StringLiteral') outputLabels.add(unquote(text(args[1])));
      }
      if (ref.name === 'VectorSelector') {
        const selector: Selector = { matchers: [] };
        const id = n.getChild('Identifier');
        if (id) selector.metric = text(id);
        for (const m of children(n.getChild('LabelMatchers') ?? n).filter((c) => c.name.endsWith('LabelMatcher') || c.name === 'QuotedLabelName')) {
          if (m.name === 'QuotedLabelName') {
            selector.metric = unquote(text(m));
            continue;
          }
          const labelNode = m.getChild('LabelName') ?? m.getChild('QuotedLabelName');
          const op = m.getChild('MatchOp');
          const value = m.getChild('StringLiteral');
          if (!labelNode || !op || !value) continue; // an error node says what is wrong
          const label = text(labelNode);
          const matcher = { label: label.startsWith('"') ? unquote(label) : label, op: text(op), value: unquote(text(value)) };
          if (matcher.label === '__name__') errors.push(`select metrics by name, not with a __name__ matcher: ${text(n)}`);
          selector.matchers.push(matcher);
        }
        if (!selector.metric) errors.push(`a selector without a metric name: ${text(n)}`);
        // The function this selector is the range argument of: VectorSelector < MatrixSelector
        // (with offset or @ modifiers on either side) < FunctionCallBody < FunctionCall.
        let up = n.parent;
        let range = false;
        while (up && ['MatrixSelector', ...MODIFIERS].includes(up.name)) {
          range ||= up.name === 'MatrixSelector';
          up = up.parent;
        }
        const id2 = range && up?.name === 'FunctionCallBody' ? up.parent?.getChild('FunctionIdentifier') : undefined;
        if (id2) selector.fn = text(id2);
        selectors.push(selector);
      }
    },
  });
  if (tree.topNode.name !== 'PromQL') errors.push(`parsed as ${tree.topNode.name}, not an expression`);
  return { errors, selectors, outputLabels };
}

/** Problems of one expression: parse errors, unknown metrics, functions on the wrong metric type. */
function checkExpr(expr: string, exported: Exported): string[] {
  const a = analyse(expr);
  const problems = [...a.errors];
  for (const s of a.selectors) {
    if (!s.metric) continue;
    const r = resolveMetric(s.metric, exported);
    if (!r) {
      problems.push(`${s.metric} is exported by neither the relay nor the operator`);
      continue;
    }
    if (s.fn && COUNTER_FUNCTIONS.has(s.fn) && r.seriesType !== 'counter') problems.push(`${s.fn}(${s.metric}): ${s.metric} is a ${r.seriesType}, not a counter`);
    if (s.fn && GAUGE_RANGE_FUNCTIONS.has(s.fn) && r.seriesType !== 'gauge') problems.push(`${s.fn}(${s.metric}): ${s.metric} is a ${r.seriesType}, not a gauge`);
  }
  return problems;
}

const metricsOf = (expr: string) => analyse(expr).selectors.flatMap((s) => (s.metric ? [s.metric] : []));

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

// ---------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------

const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Obj;
const runbookAnchors = headingAnchors(readFileSync(RUNBOOKS_FILE, 'utf8'));

let exported: Exported;
let relayFamilies: string[];
let operatorFamilies: string[];
let stopRelay: (() => Promise<void>) | undefined;

beforeAll(async () => {
  const relay = await startTestRelay();
  stopRelay = () => relay.stop();
  const relayExported = exportedFromText(await relay.metricsText());
  const operator = new OperatorMetrics();
  const operatorExported: Exported = new Map((await operator.registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type) as MetricType]));
  relayFamilies = [...relayExported.keys()];
  operatorFamilies = [...operatorExported.keys()];
  exported = new Map([...relayExported, ...operatorExported]);
});

afterAll(async () => {
  await stopRelay?.();
});

describe('the metrics the dashboard and the alerts may name', () => {
  it('come from a real relay and the operator registry (with the types PromQL functions check)', () => {
    expect(relayFamilies.every((n) => n.startsWith('mailfleet_relay_'))).toBe(true);
    expect(operatorFamilies.every((n) => n.startsWith('mailfleet_operator_'))).toBe(true);
    expect(exported.get('mailfleet_relay_deliveries_total')).toBe('counter');
    expect(exported.get('mailfleet_relay_queue_messages')).toBe('gauge');
    expect(exported.get('mailfleet_relay_queue_residence_seconds')).toBe('histogram');
    // The autoscaler's metrics exist before the autoscaler does, so its panels name real metrics.
    expect(exported.get('mailfleet_operator_scaling_decisions_total')).toBe('counter');
    expect(exported.get('mailfleet_operator_autoscaler_desired_replicas')).toBe('gauge');
  });

  it('the checker catches what it must (it is not a no-op)', () => {
    expect(checkExpr('sum by (provider) (rate(mailfleet_relay_deliveries_total{result="deferred"}[5m]))', exported)).toEqual([]);
    expect(checkExpr('histogram_quantile(0.9, sum by (le) (rate(mailfleet_relay_queue_residence_seconds_bucket[5m])))', exported)).toEqual([]);
    expect(checkExpr('rate(mailfleet_relay_deliveries_total[1d] offset 15m)', exported)).toEqual([]);
    expect(checkExpr('rate(mailfleet_relay_queue_messages[1d] offset 15m)', exported)).toEqual(['rate(mailfleet_relay_queue_messages): mailfleet_relay_queue_messages is a gauge, not a counter']);
    expect(checkExpr('rate(mailfleet_relay_deliveries_total[5m]', exported).join('\n')).toMatch(/parse error/);
    expect(checkExpr('sum(rate(mailfleet_relay_deliveries_total[5m])) by', exported).join('\n')).toMatch(/parse error/);
    expect(checkExpr('label_values(mailfleet_relay_queue_messages, namespace)', exported).join('\n')).toMatch(/parse error/);
    // A renamed or made-up metric.
    expect(checkExpr('sum(rate(mailfleet_relay_delivered_total[5m]))', exported)).toEqual(['mailfleet_relay_delivered_total is exported by neither the relay nor the operator']);
    expect(checkExpr('mailfleet_relay_queue_messages_bucket', exported)).toEqual(['mailfleet_relay_queue_messages_bucket is exported by neither the relay nor the operator']);
    expect(checkExpr('{"mailfleet_relay_queue_mesages"}', exported)).toEqual(['mailfleet_relay_queue_mesages is exported by neither the relay nor the operator']);
    // Functions on the wrong kind of metric, or without a range.
    expect(checkExpr('rate(mailfleet_relay_queue_messages[5m])', exported)).toEqual(['rate(mailfleet_relay_queue_messages): mailfleet_relay_queue_messages is a gauge, not a counter']);
    expect(checkExpr('deriv(mailfleet_relay_deliveries_total[5m])', exported)).toEqual(['deriv(mailfleet_relay_deliveries_total): mailfleet_relay_deliveries_total is a counter, not a gauge']);
    expect(checkExpr('rate(mailfleet_relay_deliveries_total)', exported).join('\n')).toMatch(/rate\(\) needs a range vector/);
    expect(checkExpr('{__name__=~"mailfleet_relay_.+"}', exported).join('\n')).toMatch(/__name__/);
    expect(substitute('rate(x{a=~"$namespace", b="${mailrelay:regex}"}[$__rate_interval])', SAMPLES[0]!)).toEqual({ expr: 'rate(x{a=~"mail", b="outbound"}[1m])', unknown: [] });
    expect(substitute('x{a=~"$namspace"}', SAMPLES[0]!).unknown).toEqual(['$namspace']);
  });
});

describe('the Grafana dashboard (charts/mailfleet/dashboards/mailfleet.json)', () => {
  const queries = dashboardQueries(dashboard);

  it('has a Prometheus datasource variable and namespace and mailrelay variables from label_values', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.uid).toBe('mailfleet');
    const vars = Object.fromEntries((dashboard.templating.list as Obj[]).map((v) => [v.name, v]));
    expect(Object.keys(vars)).toEqual(['datasource', 'namespace', 'mailrelay']);
    expect(vars.datasource).toMatchObject({ type: 'datasource', query: 'prometheus' });
    expect(vars.namespace).toMatchObject({ type: 'query', definition: 'label_values(mailfleet_relay_queue_messages, namespace)' });
    // A MailRelay is its pods' headless Service NAME-pods: the variable strips the suffix.
    expect(vars.mailrelay).toMatchObject({ type: 'query', definition: 'label_values(mailfleet_relay_queue_messages{namespace=~"$namespace"}, service)', regex: '/^(.+)-pods$/' });
    for (const v of [vars.namespace, vars.mailrelay]) expect(v.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
  });

  it('every expression parses and names only metrics the relay or the operator exports', () => {
    expect(queries.length).toBeGreaterThan(40);
    const problems: string[] = [];
    for (const q of queries) {
      for (const values of SAMPLES) {
        const { expr, unknown } = substitute(q.expr, values);
        for (const u of unknown) problems.push(`${q.where}: unknown variable ${u}`);
        for (const p of checkExpr(expr, exported)) problems.push(`${q.where}: ${p}\n    ${expr}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("selects a MailRelay's pods by namespace and service NAME-pods, and the operator's objects by namespace and name", () => {
    const [sample] = SAMPLES as [Record<string, string>];
    const problems: string[] = [];
    const has = (s: Selector, label: string, value: string) => s.matchers.some((m) => m.label === label && m.op === '=~' && m.value === value);
    for (const q of queries.filter((x) => x.panel)) {
      for (const s of analyse(substitute(q.expr, sample).expr).selectors) {
        const m = s.metric ?? '';
        const want: [string, string][] = m.startsWith('mailfleet_relay_')
          ? [
              ['namespace', sample.namespace!],
              ['service', `${sample.mailrelay}-pods`],
            ]
          : /^mailfleet_operator_(mailrelay_replicas|autoscaler_desired_replicas|scaling_decisions_total)$/.test(m)
            ? [
                ['namespace', sample.namespace!],
                ['name', sample.mailrelay!],
              ]
            : m.startsWith('mailfleet_operator_senderdomain_')
              ? [['namespace', sample.namespace!]]
              : [];
        for (const [label, value] of want) if (!has(s, label, value)) problems.push(`${q.where}: ${m} is not selected by ${label}=~"${value}"`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('covers throughput, queue, outcomes by provider, latency, replicas and scaling, DKIM rotation and DNS', () => {
    const named = new Set(queries.flatMap((q) => metricsOf(substitute(q.expr, SAMPLES[0]!).expr)).map((n) => resolveMetric(n, exported)?.family ?? n));
    for (const m of [
      'mailfleet_relay_messages_received_total',
      'mailfleet_relay_queue_messages',
      'mailfleet_relay_queue_oldest_ready_seconds',
      'mailfleet_relay_deliveries_total',
      'mailfleet_relay_queue_residence_seconds',
      'mailfleet_relay_delivery_attempt_seconds',
      'mailfleet_relay_smtp_rejections_total',
      'mailfleet_relay_dkim_signatures_total',
      'mailfleet_operator_mailrelay_replicas',
      'mailfleet_operator_autoscaler_desired_replicas',
      'mailfleet_operator_scaling_decisions_total',
      'mailfleet_operator_senderdomain_key_waiting_seconds',
      'mailfleet_operator_senderdomain_dns_verified',
      'mailfleet_operator_leader',
    ]) {
      expect(named, m).toContain(m);
    }
    const titles = allPanels(dashboard).map((p) => p.title as string);
    for (const t of ['Deferrals by provider', 'Bounce rate by provider', 'Latency from acceptance to final outcome', 'Scaling decisions', 'Sender domains']) expect(titles).toContain(t);
  });

  it('panels are well formed: unique ids, on the grid without overlaps, the datasource variable, a unit, legends that name grouped labels', () => {
    const panels = allPanels(dashboard);
    const ids = panels.map((p) => p.id as number);
    expect(new Set(ids).size).toBe(ids.length);
    const problems: string[] = [];
    const boxes: { id: number; x: number; y: number; w: number; h: number }[] = [];
    for (const p of panels) {
      const g = p.gridPos as Obj | undefined;
      if (!g || !(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.y >= 0 && g.h > 0)) problems.push(`panel ${p.id}: bad gridPos ${JSON.stringify(g)}`);
      else boxes.push({ id: p.id, x: g.x, y: g.y, w: g.w, h: g.h });
      if (p.type === 'row') continue;
      if (JSON.stringify(p.datasource) !== JSON.stringify({ type: 'prometheus', uid: '${datasource}' })) problems.push(`panel ${p.id}: datasource is not the datasource variable`);
      if (!p.fieldConfig?.defaults?.unit) problems.push(`panel ${p.id} "${p.title}": no unit`);
      if (!p.description) problems.push(`panel ${p.id} "${p.title}": no description`);
      const refIds = (p.targets as Obj[]).map((t) => t.refId as string);
      if (new Set(refIds).size !== refIds.length || refIds.length === 0) problems.push(`panel ${p.id}: refIds ${refIds.join(',')}`);
      for (const t of p.targets as Obj[]) {
        if (JSON.stringify(t.datasource) !== JSON.stringify(p.datasource)) problems.push(`panel ${p.id} ${t.refId}: target datasource differs`);
        if (p.type !== 'timeseries') continue;
        if (!t.legendFormat || t.legendFormat === '__auto') problems.push(`panel ${p.id} ${t.refId}: no legend`);
        const grouped = analyse(substitute(t.expr as string, SAMPLES[0]!).expr).outputLabels;
        for (const [, label] of (t.legendFormat as string).matchAll(/\{\{\s*(\w+)\s*\}\}/g)) if (!grouped.has(label!)) problems.push(`panel ${p.id} ${t.refId}: legend names {{${label}}}, which the query does not group by`);
      }
    }
    for (const a of boxes) {
      for (const b of boxes) {
        if (a.id < b.id && a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h) problems.push(`panels ${a.id} and ${b.id} overlap`);
      }
    }
    expect(problems).toEqual([]);
    // Units where they matter: rates per second, durations in seconds, ratios as percent.
    const unitOf = (title: string) => panels.find((p) => p.title === title)?.fieldConfig.defaults.unit;
    expect(unitOf('Delivery outcomes')).toBe('ops');
    expect(unitOf('Oldest ready message age by pod')).toBe('s');
    expect(unitOf('Latency from acceptance to final outcome')).toBe('s');
    expect(unitOf('Bounce rate by provider')).toBe('percentunit');
    expect(unitOf('Deferred share of attempts by provider')).toBe('percentunit');
  });
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
      'MailfleetProviderDeferralSpike',
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
