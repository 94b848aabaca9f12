import net from 'node:net';

// Ports a test must never take, even by accident: real MTAs may own them.
const RESERVED = new Set([25, 465, 587]);
// The kernel may hand out a port again once it was closed; a port given to one peer of
// this process must not be given to the next one before the first has bound it.
const handedOut = new Set<number>();

// Ports below the kernel's ephemeral range (32768-60999 by default): a port from that range,
// picked now and bound a moment later, can meanwhile become the local port of any outbound
// connection (a peer binding it then fails with "Address already in use").
const LOW = 20_000;
const HIGH = 32_000;

function tryBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A TCP port on 127.0.0.1, below the ephemeral range, that was free a moment ago. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (RESERVED.has(port) || handedOut.has(port)) continue;
    if (await tryBind(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`freePort: no free port on 127.0.0.1 between ${LOW} and ${HIGH} after 200 tries`);
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Polls until 127.0.0.1:port accepts connections; `alive` lets a dead peer fail fast. */
export async function waitForPort(
  port: number,
  opts: { timeoutMs?: number; alive?: () => boolean; what?: string } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  const what = opts.what ?? 'peer';
  while (Date.now() < deadline) {
    if (opts.alive && !opts.alive()) throw new Error(`${what} exited before listening on port ${port}`);
    if (await canConnect(port)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${opts.timeoutMs ?? 15_000} ms`);
}
