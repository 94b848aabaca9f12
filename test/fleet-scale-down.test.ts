/**
 * Scale-down under load, with real relay processes: four relays of one fleet take mail from
 * clients (as a Service spreads them) and deliver to a slow destination; three are stopped
 * with SIGTERM while mail keeps coming. Every message that got a 250 must reach the
 * destination: lost must be 0; duplicates are counted and reported.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { spawnMailfleet, type RelayProcess } from './support/process.js';
import { waitFor } from './support/relay.js';
import { Spool } from '../relay/spool/spool.js';
import { submit } from './support/smtp-talk.js';

const RELAYS = 4;
const MESSAGES = 400;

describe('fleet scale-down from 4 relays to 1 under load', { timeout: 240_000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-fleet-'));
  const relays: { process: RelayProcess; smtp: number; http: number }[] = [];
  let sink: ScriptedSink;
  afterAll(async () => {
    for (const r of relays) if (r.process.child.exitCode === null) r.process.child.kill('SIGKILL');
    await sink?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('loses nothing that was accepted while three relays hand their queues to the last', async () => {
    // A slow destination (100 ms a message, one connection per relay): queues build up at
    // every relay, more than a stopping relay can deliver before its handoff window.
    sink = await startScriptedSink({ dataDelayMs: 100 });
    const token = path.join(dir, 'token');
    fs.writeFileSync(token, 'fleet-token\n');
    const ports = await Promise.all(Array.from({ length: RELAYS }, async () => ({ smtp: await freePort(), http: await freePort() })));
    for (const [i, p] of ports.entries()) {
      const config = {
        hostname: `relay-${i}.test`,
        spool: { dir: path.join(dir, `spool-${i}`), minFreeBytes: 0 },
        listeners: [{ name: 'apps', address: '127.0.0.1', port: p.smtp, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
        delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' }, maxConnectionsPerDestination: 1 },
        http: { address: '127.0.0.1', port: p.http },
        shutdown: { drainTimeout: '6s' },
        handoff: { tokenFile: token, peers: ports.filter((_, j) => j !== i).map((q) => `127.0.0.1:${q.http}`), window: '4s' },
        log: { level: 'info' },
      };
      const file = path.join(dir, `relay-${i}.yaml`);
      fs.writeFileSync(file, JSON.stringify(config));
      const process = spawnMailfleet(['relay', '--config', file]);
      relays.push({ process, ...p });
    }
    for (const r of relays) await r.process.waitForLog(/"event":"listening"/);

    // Clients spread over the relays like a Service does; a relay that stopped listening
    // refuses the connection and the client tries the next, as an application's retry would.
    const accepted = new Set<string>();
    let next = 0;
    const alive = () => relays.filter((r) => r.process.child.exitCode === null && !r.process.output().includes('"event":"draining"'));
    const sendOne = async (n: number) => {
      const id = `<fleet-${n}@app.test>`;
      const msg = `From: app@app.test\r\nTo: user@dest.test\r\nSubject: fleet ${n}\r\nMessage-ID: ${id}\r\n\r\nMessage ${n}.\r\n`;
      for (let attempt = 0; attempt < 20; attempt++) {
        const candidates = alive();
        const relay = candidates[next++ % candidates.length]!;
        try {
          if ((await submit(relay.smtp, 'app@app.test', ['user@dest.test'], msg)).startsWith('250')) {
            accepted.add(id);
            return;
          }
        } catch {
          // refused or closed: the next relay
        }
      }
    };
    let sent = 0;
    const clients = Array.from({ length: 8 }, async () => {
      while (sent < MESSAGES) await sendOne(sent++);
    });

    // Mid-load: scale down to one relay.
    await waitFor(() => accepted.size >= MESSAGES / 3, 'a third of the load accepted', 30_000);
    for (const r of relays.slice(1)) r.process.child.kill('SIGTERM');
    await Promise.all(clients);
    const exits = await Promise.all(relays.slice(1).map((r) => r.process.exited));
    expect(exits).toEqual([0, 0, 0]);

    // Every accepted message arrives; the last relay delivered what the others handed over.
    const received = () => new Set(sink.messages.map((m) => /Message-ID: (<[^>]+>)/i.exec(m.raw.toString())?.[1]));
    await waitFor(() => [...accepted].every((id) => received().has(id)), 'every accepted message at the destination', 90_000);
    const lost = [...accepted].filter((id) => !received().has(id));
    const duplicates = sink.messages.length - received().size;
    const handedOver = relays.slice(1).reduce((n, r) => n + Number(/"event":"handoff","handed":(\d+)/.exec(r.process.output())?.[1] ?? 0), 0);
    process.stdout.write(`fleet scale-down: ${accepted.size} accepted, ${received().size} delivered, lost ${lost.length}, duplicates ${duplicates}, handed over ${handedOver}\n`);
    expect(accepted.size).toBe(MESSAGES);
    expect(lost).toEqual([]);
    expect(handedOver).toBeGreaterThan(0);
    // The stopped relays left nothing behind.
    for (const i of [1, 2, 3]) expect((await new Spool(path.join(dir, `spool-${i}`)).scan()).entries).toEqual([]);
  });
});
