/**
 * The Grafana dashboard's PromQL: every panel target and variable query, and Grafana's
 * variables replaced by values a query could get, as Grafana would send them to Prometheus.
 * Shared by the static checks (observability-dashboard.test.ts) and the real Prometheus (prometheus.test.ts).
 */

// Loosely typed on purpose: the dashboard is JSON read field by field.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

/** Grafana's built-in variables, with values a query could get. */
export const BUILTIN_VARIABLES: Record<string, string> = { __rate_interval: '1m', __interval: '30s', __range: '6h', __range_s: '21600', __range_ms: '21600000', __interval_ms: '30000' };

/**
 * Replaces Grafana variables ($name, ${name}, ${name:format}, [[name]]) with sample values.
 * An unknown variable is an error: a typo would otherwise reach Prometheus as text.
 */
export function substitute(expr: string, values: Record<string, string>): { expr: string; unknown: string[] } {
  const unknown: string[] = [];
  const out = expr.replace(/\$\{([A-Za-z_]\w*)(?::[\w]+)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)\]\]/g, (whole, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    const value = values[name] ?? BUILTIN_VARIABLES[name];
    if (value === undefined) unknown.push(whole);
    return value ?? whole;
  });
  return { expr: out, unknown };
}

export interface DashboardQuery {
  where: string;
  expr: string;
  panel?: Obj;
  target?: Obj;
}

/** Every panel, rows' nested panels included. */
export function allPanels(dashboard: Obj): Obj[] {
  return (dashboard.panels as Obj[]).flatMap((p) => [p, ...((p.panels as Obj[] | undefined) ?? [])]);
}

/** The PromQL inside a Grafana variable query (label_values(EXPR, label), query_result(EXPR)). */
export function variableExpr(query: string): string | undefined {
  const lv = /^\s*label_values\(\s*(.+)\s*,\s*[A-Za-z_]\w*\s*\)\s*$/s.exec(query);
  if (lv) return lv[1];
  if (/^\s*label_values\(\s*[A-Za-z_]\w*\s*\)\s*$/.test(query)) return undefined;
  const qr = /^\s*query_result\((.+)\)\s*$/s.exec(query);
  if (qr) return qr[1];
  throw new Error(`unsupported variable query: ${query}`);
}

export function dashboardQueries(dashboard: Obj): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  for (const panel of allPanels(dashboard)) {
    for (const target of (panel.targets as Obj[] | undefined) ?? []) {
      out.push({ where: `panel ${panel.id} "${panel.title}" target ${target.refId}`, expr: target.expr as string, panel, target });
    }
  }
  for (const v of dashboard.templating.list as Obj[]) {
    if (v.type !== 'query') continue;
    const query = typeof v.query === 'string' ? v.query : (v.query?.query as string);
    const expr = variableExpr(query);
    if (expr !== undefined) out.push({ where: `variable ${v.name}`, expr });
  }
  return out;
}

/** Two sets of sample values: single values, and what a multi-value selection interpolates to. */
export const SAMPLES: Record<string, string>[] = [
  { datasource: 'prometheus', namespace: 'mail', mailrelay: 'outbound' },
  { datasource: 'prometheus', namespace: '(mail|billing)', mailrelay: '(outbound|bulk)' },
];
