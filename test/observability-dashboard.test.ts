/**
 * The Grafana dashboard (charts/mailfleet/dashboards/mailfleet.json): every PromQL expression
 * parses with Prometheus's own grammar after Grafana's variables are replaced by sample values,
 * and names only metrics a real relay or the operator exports (test/support/promql.ts), so
 * renaming a metric fails this suite; its variables, selectors, coverage and panel layout.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { allPanels, dashboardQueries, SAMPLES, substitute } from './support/dashboard.js';
import { analyse, checkExpr, exportedMetrics, metricsOf, resolveMetric, type Exported, type Selector } from './support/promql.js';

const root = path.resolve(import.meta.dirname, '..');
const DASHBOARD_FILE = path.join(root, 'charts/mailfleet/dashboards/mailfleet.json');

// Loosely typed on purpose: these are JSON and YAML documents read field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Obj;

let exported: Exported;
let relayFamilies: string[];
let operatorFamilies: string[];

beforeAll(async () => {
  ({ exported, relayFamilies, operatorFamilies } = await exportedMetrics());
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

  it('covers throughput, queue, outcomes by provider, latency, replicas and scaling, DKIM rotation and DNS, webhooks', () => {
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
      'mailfleet_relay_webhook_oldest_event_age_seconds',
      'mailfleet_relay_webhook_requests_total',
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
    for (const t of ['Deferrals by provider', 'Bounce rate by provider', 'Latency from acceptance to final outcome', 'Scaling decisions', 'Sender domains', 'Webhook backlog age', 'Webhook requests by result']) expect(titles).toContain(t);
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
    expect(unitOf('Webhook backlog age')).toBe('s');
    expect(unitOf('Webhook requests by result')).toBe('reqps');
    expect(unitOf('Latency from acceptance to final outcome')).toBe('s');
    expect(unitOf('Bounce rate by provider')).toBe('percentunit');
    expect(unitOf('Deferred share of attempts by provider')).toBe('percentunit');
  });
});
