import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { RelayConfig } from './config.js';
import { FleetSuppressions } from './fleet-suppressions.js';
import { SuppressionList } from './suppression.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-fleet-unit-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A relay's list and its fleet side, served on a loopback port. */
async function member(tokenFile: string, peers: () => string[]) {
  const shared: { fleet?: FleetSuppressions } = {};
  const list = await SuppressionList.open(tempDir(), { ttl: () => 30 * 86400, onAdded: (s) => shared.fleet?.share(s) });
  const fleet = (shared.fleet = new FleetSuppressions({ list, handoff: () => ({ tokenFile, peers: peers() }) as RelayConfig['handoff'], log: pino({ level: 'silent' }) }));
  const server = http.createServer((req, res) => void fleet.serve(req).then((r) => res.writeHead(r.code).end(r.body)));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  cleanups.push(() => list.close());
  cleanups.push(() => new Promise((r) => server.close(r)));
  return { list, fleet, addr: `127.0.0.1:${(server.address() as net.AddressInfo).port}` };
}

describe('sharing the suppression list with peers', () => {
  it('keeps a healthy peer within about a second while another hangs, and sends what piles up for the hung one in one batch', async () => {
    const tokenFile = path.join(tempDir(), 'token');
    fs.writeFileSync(tokenFile, 'fleet-token-0123456789');
    const requests: number[] = [];
    // A pod that takes connections and never answers.
    const hung = net.createServer((socket) => {
      requests.push(Date.now());
      socket.on('data', () => undefined);
    });
    await new Promise<void>((ok) => hung.listen(0, '127.0.0.1', ok));
    cleanups.push(() => new Promise((r) => hung.close(r)));
    const b = await member(tokenFile, () => []);
    const a = await member(tokenFile, () => [b.addr, `127.0.0.1:${(hung.address() as net.AddressInfo).port}`]);
    for (let i = 0; i < 4; i++) {
      const listedAt = Date.now();
      a.list.add({ sender: 'news@sender.test', recipient: `gone${i}@dest.test`, statusCode: '5.1.1', reply: '550 5.1.1 unknown', at: listedAt });
      while (!b.list.lookup('news@sender.test', `gone${i}@dest.test`)) await new Promise((r) => setTimeout(r, 20));
      expect(Date.now() - listedAt, `gone${i}@ reached the healthy peer`).toBeLessThan(2000);
    }
    // Four batches went to the healthy peer; the hung one got its first request and the rest waits as one.
    expect(requests).toHaveLength(1);
  }, 20_000);
});
