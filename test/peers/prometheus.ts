/**
 * A private Prometheus server (Debian's `prometheus` package, 2.42) on a free loopback port with
 * a throwaway config and TSDB, stopped by PID; and `promtool`. The HTTP API answers are returned
 * as Prometheus sends them, so a test sees its error type and message.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { binary } from './availability.js';
import { freePort, waitForPort } from './ports.js';
import { onProcessExit, forgetOnProcessExit, run, spawnPeer, type RunResult } from './proc.js';
import { waitUntil } from './wait.js';

export interface ApiAnswer<T = unknown> {
  status: 'success' | 'error';
  data?: T;
  errorType?: string;
  error?: string;
  warnings?: string[];
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface ScrapeTarget {
  job: string;
  port: number;
  /** Target labels, as service discovery and a ServiceMonitor would give them. */
  labels: Record<string, string>;
  /** Keep the labels the target exports over the target labels (the chart's ServiceMonitor does for the operator). */
  honorLabels?: boolean;
}

export interface PrometheusOptions {
  targets: ScrapeTarget[];
  /** Rule files' contents by file name, loaded as rule_files. */
  ruleFiles?: Record<string, unknown>;
  /** Scrape and rule evaluation interval (default 1s). */
  interval?: string;
}

export interface Prometheus {
  url: string;
  dir: string;
  pid: number;
  output(): string;
  /** GET /api/v1/<endpoint> with the parameters (repeated for arrays); any HTTP status. */
  api<T = unknown>(endpoint: string, params?: Record<string, string | string[]>): Promise<ApiAnswer<T>>;
  /** An instant query at the server's now. */
  query(expr: string): Promise<ApiAnswer<{ resultType: string; result: Sample[] }>>;
  /** Resolves once every scrape target has been scraped successfully. */
  waitForTargetsUp(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export function promtool(args: string[], opts: { cwd?: string; input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return run(binary('promtool'), args, { cwd: opts.cwd, input: opts.input, timeoutMs: opts.timeoutMs ?? 120_000 });
}

export async function startPrometheus(opts: PrometheusOptions): Promise<Prometheus> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-prometheus-'));
  onProcessExit(dir, () => fs.rmSync(dir, { recursive: true, force: true }));
  const interval = opts.interval ?? '1s';
  const ruleFiles = Object.entries(opts.ruleFiles ?? {});
  for (const [name, content] of ruleFiles) fs.writeFileSync(path.join(dir, name), YAML.stringify(content));
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
    rule_files: ruleFiles.map(([name]) => name),
    scrape_configs: opts.targets.map((t) => ({
      job_name: t.job,
      honor_labels: t.honorLabels ?? false,
      static_configs: [{ targets: [`127.0.0.1:${t.port}`], labels: t.labels }],
    })),
  };
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), YAML.stringify(config));
  const check = await promtool(['check', 'config', path.join(dir, 'prometheus.yml')]);
  if (check.code !== 0) throw new Error(`promtool check config refused the test's Prometheus config:\n${check.stdout}${check.stderr}`);

  const port = await freePort();
  const peer = spawnPeer(
    binary('prometheus'),
    [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      // Debian's defaults point at /etc/prometheus; nothing here uses consoles.
      `--web.console.templates=${dir}`,
      `--web.console.libraries=${dir}`,
      '--log.level=warn',
    ],
    { cwd: dir },
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await peer.stop(10_000);
    fs.rmSync(dir, { recursive: true, force: true });
    forgetOnProcessExit(dir);
  };
  try {
    await waitForPort(port, { timeoutMs: 60_000, alive: peer.running, what: 'prometheus' });
    await waitUntil(async () => (await fetch(`${url}/-/ready`).catch(() => undefined))?.status === 200, { timeoutMs: 60_000, intervalMs: 100, what: 'prometheus /-/ready' });
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\nprometheus said:\n${peer.output()}`);
  }

  const api = async <T>(endpoint: string, params: Record<string, string | string[]> = {}): Promise<ApiAnswer<T>> => {
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const one of [v].flat()) search.append(k, one);
    const res = await fetch(`${url}/api/v1/${endpoint}?${search.toString()}`);
    return (await res.json()) as ApiAnswer<T>;
  };
  return {
    url,
    dir,
    pid: peer.pid,
    output: peer.output,
    api,
    query: (expr) => api('query', { query: expr }),
    async waitForTargetsUp(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const targets = await api<{ activeTargets: { labels: Record<string, string>; health: string; lastError: string }[] }>('targets');
        const active = targets.data?.activeTargets ?? [];
        if (active.length === opts.targets.length && active.every((t) => t.health === 'up')) return;
        if (Date.now() > deadline) throw new Error(`prometheus targets not all up after ${timeoutMs} ms: ${active.map((t) => `${t.labels.job} ${t.health} ${t.lastError}`).join('; ') || 'none'}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    stop,
  };
}
