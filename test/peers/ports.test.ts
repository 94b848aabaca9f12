import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { canConnect, freePort, waitForPort } from './ports.js';

function listen(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((s) => s.end());
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

describe('freePort', () => {
  it('returns distinct bindable ports on 127.0.0.1, never 25/465/587', async () => {
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    expect(new Set(ports).size).toBe(ports.length);
    for (const p of ports) expect([25, 465, 587]).not.toContain(p);
    const server = await listen(ports[0] ?? 0);
    try {
      expect(await canConnect(ports[0] ?? 0)).toBe(true);
      await waitForPort(ports[0] ?? 0, { timeoutMs: 1000 });
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('waitForPort times out, or fails fast when the peer is dead', async () => {
    const port = await freePort();
    expect(await canConnect(port)).toBe(false);
    await expect(waitForPort(port, { timeoutMs: 200 })).rejects.toThrow(/did not listen/);
    await expect(waitForPort(port, { alive: () => false, what: 'x' })).rejects.toThrow(/x exited/);
  });
});
