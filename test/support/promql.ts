/**
 * A PromQL checker for the dashboard's and the alerts' expressions: parses with Prometheus's own
 * grammar (@prometheus-io/lezer-promql) and checks that every metric named is one that a real relay
 * or the operator's registry exports, with rate()/increase() on counters and deriv()/delta() on
 * gauges. Shared by the dashboard and alert suites (observability-*.test.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { OperatorMetrics } from '../../operator/metrics.js';
import { startTestRelay } from './relay.js';

// ---------------------------------------------------------------------------------------
// The metrics that really exist
// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
export type Exported = Map<string, MetricType>;

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
export function resolveMetric(name: string, exported: Exported): Resolved | undefined {
  const type = exported.get(name);
  if (type) return { family: name, seriesType: type };
  const m = /^(.+)_(bucket|sum|count)$/.exec(name);
  if (!m) return undefined;
  const base = exported.get(m[1]!);
  if (base === 'histogram' || (base === 'summary' && m[2] !== 'bucket')) return { family: m[1]!, seriesType: 'counter' };
  return undefined;
}

export interface ExportedMetrics {
  /** Every family of the relay and the operator, by name. */
  exported: Exported;
  relayFamilies: string[];
  operatorFamilies: string[];
}

/**
 * The metric families a real relay (started and stopped here) and the operator's registry export.
 * The relay has a webhook (never reached: no mail flows), since the events' metrics exist only
 * with one.
 */
export async function exportedMetrics(): Promise<ExportedMetrics> {
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-promql-key-'));
  fs.writeFileSync(path.join(keyDir, 'k1'), 'a-signing-key-of-at-least-32-characters-0123456789\n');
  const relay = await startTestRelay({ events: { webhooks: [{ name: 'app', url: 'http://127.0.0.1:9/events', signingKeys: [{ id: 'k1', secretFile: path.join(keyDir, 'k1') }] }] } });
  try {
    const relayExported = exportedFromText(await relay.metricsText());
    const operator = new OperatorMetrics();
    const operatorExported: Exported = new Map((await operator.registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type) as MetricType]));
    return { exported: new Map([...relayExported, ...operatorExported]), relayFamilies: [...relayExported.keys()], operatorFamilies: [...operatorExported.keys()] };
  } finally {
    await relay.stop();
    fs.rmSync(keyDir, { recursive: true, force: true });
  }
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
export interface Selector {
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

export function analyse(expr: string): Analysis {
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
export function checkExpr(expr: string, exported: Exported): string[] {
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

export const metricsOf = (expr: string) => analyse(expr).selectors.flatMap((s) => (s.metric ? [s.metric] : []));
