/**
 * A fault-injecting proxy in front of the real API server: the operator talks to it over plain
 * HTTP on loopback and it forwards every request, with the operator's own bearer token, to the
 * API server over TLS. It decides nothing about Kubernetes itself (every answer that is not an
 * injected fault is the real server's); it only lets a test fail chosen requests, cut the open
 * watches, hold new watches back for a while, and count what the operator sent.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { ClusterAccess } from './cluster.js';

export interface Matcher {
  method?: string;
  /** Matched against the path with its query string. */
  path: RegExp;
}

export interface RequestRecord {
  method: string;
  path: string;
  status: number;
  watch: boolean;
  /** The request body of a write, for a failure report. */
  body?: string;
}

export interface FaultProxy {
  /** http://127.0.0.1:PORT, for a kubeconfig (with insecure-skip-tls-verify). */
  url: string;
  /**
   * The next `times` matching requests (Infinity: all of them) get this Status (code and
   * reason) instead of the server's answer. Returns what ends it early.
   */
  failNext(matcher: Matcher, code: number, reason: string, times?: number): () => void;
  /** Ends every open watch stream, as a server restart or a load balancer's idle timeout would. */
  cutWatches(): void;
  /** While held, new watch requests wait (the client sees a slow server); released, they go through. */
  holdWatches(held: boolean): void;
  requests(): RequestRecord[];
  /** Forwarded requests the server has not answered yet (watches aside), with how long they have waited: for a failure report. */
  unanswered(): { method: string; path: string; waitedMs: number }[];
  resetRequests(): void;
  stop(): Promise<void>;
}

export async function startFaultProxy(access: ClusterAccess): Promise<FaultProxy> {
  const upstream = new URL(access.server);
  const agent = new https.Agent({ ca: fs.readFileSync(access.caFile), keepAlive: true });
  const faults: { matcher: Matcher; code: number; reason: string; left: number }[] = [];
  const watches = new Set<http.ServerResponse>();
  let held = false;
  let release: (() => void)[] = [];
  let log: RequestRecord[] = [];
  const pendingBodies = new Map<string, string>();
  const waiting = new Set<{ method: string; path: string; since: number }>();

  const server = http.createServer((req, res) => {
    const path = req.url ?? '/';
    const method = req.method ?? 'GET';
    const watch = /[?&]watch=(true|1)/.test(path);
    const fault = faults.find((f) => f.left > 0 && (!f.matcher.method || f.matcher.method === method) && f.matcher.path.test(path));
    if (fault) {
      fault.left--;
      log.push({ method, path, status: fault.code, watch });
      req.resume();
      res.writeHead(fault.code, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: fault.code, reason: fault.reason, message: `injected by the test's fault proxy: ${fault.reason}` }));
      return;
    }
    const forward = () => {
      const headers = { ...req.headers, host: upstream.host };
      const pending = { method, path, since: Date.now() };
      if (!watch) waiting.add(pending);
      const up = https.request({ host: upstream.hostname, port: upstream.port, method, path, headers, agent }, (upRes) => {
        waiting.delete(pending);
        const body = pendingBodies.get(`${method} ${path}`);
        pendingBodies.delete(`${method} ${path}`);
        log.push({ method, path, status: upRes.statusCode ?? 0, watch, ...(body !== undefined ? { body } : {}) });
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        // A watch with nothing to say yet still answers at once: send the headers now.
        res.flushHeaders();
        upRes.pipe(res);
        if (watch) {
          watches.add(res);
          res.on('close', () => {
            watches.delete(res);
            up.destroy();
          });
        }
      });
      up.on('error', (err) => {
        waiting.delete(pending);
        if (!res.headersSent) res.writeHead(502);
        res.end(String(err));
      });
      if (method !== 'GET') {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          const record = log.find((r) => r.method === method && r.path === path && r.body === undefined);
          if (record) record.body = body;
          else pendingBodies.set(`${method} ${path}`, body);
        });
      }
      req.pipe(up);
    };
    if (watch && held) release.push(forward);
    else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    failNext: (matcher, code, reason, times = 1) => {
      const fault = { matcher, code, reason, left: times };
      faults.push(fault);
      return () => void (fault.left = 0);
    },
    cutWatches: () => {
      for (const res of watches) res.destroy();
      watches.clear();
    },
    holdWatches: (h) => {
      held = h;
      if (!h) {
        const waiting = release;
        release = [];
        for (const go of waiting) go();
      }
    },
    requests: () => [...log],
    unanswered: () => [...waiting].map((w) => ({ method: w.method, path: w.path, waitedMs: Date.now() - w.since })),
    resetRequests: () => void (log = []),
    stop: async () => {
      for (const res of watches) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
