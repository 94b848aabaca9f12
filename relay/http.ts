/** The relay's HTTP endpoint: /metrics for Prometheus, /healthz (alive) and /readyz (take traffic). */
import http from 'node:http';
import type net from 'node:net';

export interface Probe {
  ok: boolean;
  reason?: string;
}

export function startHttp(opts: { address: string; port: number; metrics: () => Promise<{ text: string; contentType: string }>; ready: () => Promise<Probe>; healthy: () => Probe }): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const reply = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/metrics') {
      opts.metrics().then((m) => reply(200, m.text, m.contentType), (err: Error) => reply(500, err.message));
    } else if (url === '/healthz') {
      const p = opts.healthy();
      reply(p.ok ? 200 : 503, p.ok ? 'ok\n' : `not healthy: ${p.reason}\n`);
    } else if (url === '/readyz') {
      opts.ready().then((p) => reply(p.ok ? 200 : 503, p.ok ? 'ready\n' : `not ready: ${p.reason}\n`), (err: Error) => reply(503, `not ready: ${err.message}\n`));
    } else {
      reply(404, 'not found: try /metrics, /healthz or /readyz\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.address, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

export function portOf(server: http.Server): number {
  return (server.address() as net.AddressInfo).port;
}
