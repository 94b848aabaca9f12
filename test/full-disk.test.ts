/**
 * A spool that runs out of space: the relay keeps running, answers 452 4.3.1 for what it
 * cannot store, and every message it did acknowledge is delivered once a destination is
 * back. A relay restarted on a spool that is 100% full starts drain-only (not ready, 452 to
 * new mail), delivers what it holds, and takes mail again once that has freed the space.
 * spool.minFreeBytes holds against clients faster than the free-space figure is refreshed.
 * Each spool is a small tmpfs in a private mount namespace (no host mount is touched).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { describePeer } from './peers/availability.js';
import { freePort, waitForPort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { CLI } from './support/process.js';
import { waitFor } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

interface Setup {
  dir: string;
  spoolDir: string;
  holder: ChildProcess;
  port: number;
  httpPort: number;
  sinkPort: number;
  /** Runs a command inside the mount namespace. */
  inside(cmd: string[]): string;
  startRelay(spool: { minFreeBytes: number }): { proc: ChildProcess; output: () => string };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A process that owns a mount namespace with a small tmpfs on the spool; relays join it. */
async function setup(size = '1m'): Promise<Setup> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-full-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const spoolDir = path.join(dir, 'spool');
  fs.mkdirSync(spoolDir);
  const holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=${size} tmpfs ${spoolDir} && echo ready && exec sleep 600`]);
  cleanups.push(() => void holder.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    holder.once('exit', (code) => reject(new Error(`mount namespace holder exited (${code})`)));
  });
  const [port, httpPort, sinkPort] = [await freePort(), await freePort(), await freePort()];
  const inside = (cmd: string[]) => execFileSync('nsenter', ['-t', String(holder.pid), '-m', ...cmd], { encoding: 'utf8' });
  const startRelay = (spool: { minFreeBytes: number }) => {
    fs.writeFileSync(
      path.join(dir, 'relay.yaml'),
      JSON.stringify({
        hostname: 'relay.test',
        spool: { dir: spoolDir, ...spool },
        listeners: [{ name: 'in', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
        delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sinkPort, tls: 'none' } },
        retry: { minBackoff: '300ms', maxBackoff: '300ms' },
        http: { address: '127.0.0.1', port: httpPort },
      }),
    );
    const proc = spawn('nsenter', ['-t', String(holder.pid), '-m', process.execPath, CLI, 'relay', '--config', path.join(dir, 'relay.yaml')]);
    let output = '';
    proc.stdout!.on('data', (d: Buffer) => (output += d));
    proc.stderr!.on('data', (d: Buffer) => (output += d));
    cleanups.push(() => void proc.kill('SIGKILL'));
    return { proc, output: () => output };
  };
  return { dir, spoolDir, holder, port, httpPort, sinkPort, inside, startRelay };
}

/** Sends 8 KB messages until the spool refuses five; returns the Message-IDs acknowledged and the refusals. */
async function fill(port: number): Promise<{ acknowledged: string[]; refusals: string[] }> {
  const acknowledged: string[] = [];
  const refusals: string[] = [];
  const filler = 'x'.repeat(8000);
  for (let i = 0; i < 400 && refusals.length < 5; i++) {
    const id = `m${i}@full.test`;
    const reply = await submit(port, 'app@example.test', ['r@dest.test'], `Message-ID: <${id}>\r\nSubject: ${i}\r\n\r\n${filler}\r\n`);
    if (reply.startsWith('250')) acknowledged.push(id);
    else refusals.push(reply);
  }
  return { acknowledged, refusals };
}

async function readyz(httpPort: number): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
  return { status: res.status, text: await res.text() };
}

function expectAllDelivered(sink: ScriptedSink, acknowledged: string[]): void {
  const delivered = new Set(sink.messages.map((m) => /Message-ID: <([^>]+)>/.exec(m.raw.toString())?.[1]));
  expect(acknowledged.filter((id) => !delivered.has(id))).toEqual([]);
}

describePeer(
  'spool on a full disk',
  ['unshare', 'nsenter', 'mount'],
  () => {
    it('answers 452 when the spool is full, keeps running, and delivers everything it acknowledged', async () => {
      const s = await setup();
      const relay = s.startRelay({ minFreeBytes: 0 });
      await waitForPort(s.port, { what: 'relay in the mount namespace' });

      const { acknowledged, refusals } = await fill(s.port);
      expect(acknowledged.length).toBeGreaterThan(10);
      expect(refusals).toHaveLength(5);
      for (const r of refusals) expect(r).toMatch(/^452 4\.3\.1 /);
      expect(relay.proc.exitCode).toBeNull();
      expect(relay.output()).toMatch(/could not store message/);

      const sink = await startScriptedSink({ port: s.sinkPort });
      cleanups.push(() => sink.stop());
      await waitFor(() => acknowledged.every((id) => sink.messages.some((m) => m.raw.includes(`<${id}>`))), 'every acknowledged message at the destination', 30_000);
      const delivered = new Set(sink.messages.map((m) => /Message-ID: <([^>]+)>/.exec(m.raw.toString())?.[1]));
      expect([...delivered].filter((id) => id && !acknowledged.includes(id))).toEqual([]);
    });

    it('restarts on a 100% full spool drain-only: not ready, 452 to new mail, delivers, then takes mail again', async () => {
      const s = await setup();
      const first = s.startRelay({ minFreeBytes: 0 });
      await waitForPort(s.port, { what: 'relay in the mount namespace' });
      const { acknowledged } = await fill(s.port);
      expect(acknowledged.length).toBeGreaterThan(10);
      // A crash, then whatever else wrote to the volume took the last byte.
      first.proc.kill('SIGKILL');
      await new Promise((r) => first.proc.once('exit', r));
      try {
        s.inside(['sh', '-c', `cat /dev/zero > ${s.spoolDir}/filler`]);
      } catch {
        // cat stops with ENOSPC: the volume is full, as meant.
      }
      expect(s.inside(['df', '--output=avail', '-B1', s.spoolDir]).trim().split('\n')[1]!.trim()).toBe('0');

      const second = s.startRelay({ minFreeBytes: 64 * 1024 });
      await waitForPort(s.port, { what: 'relay restarted on the full spool', alive: () => second.proc.exitCode === null });
      const before = await readyz(s.httpPort);
      expect(before.status).toBe(503);
      expect(before.text).toMatch(/^not ready: spool has \d+ bytes free, below the floor of 65536/);
      expect(await submit(s.port, 'app@example.test', ['r@dest.test'], 'Subject: while full\r\n\r\nx\r\n')).toMatch(/^452 4\.3\.1 /);
      expect(second.output()).toMatch(/"event":"spool_full"/);

      // Delivering what it holds frees the space (the journal segments go once their mail is out).
      s.inside(['rm', `${s.spoolDir}/filler`]);
      const sink = await startScriptedSink({ port: s.sinkPort });
      cleanups.push(() => sink.stop());
      await waitFor(() => acknowledged.every((id) => sink.messages.some((m) => m.raw.includes(`<${id}>`))), 'every acknowledged message at the destination', 30_000);
      expectAllDelivered(sink, acknowledged);
      await waitFor(async () => (await readyz(s.httpPort)).status === 200, 'ready again once the space is free', 15_000);
      expect(await submit(s.port, 'app@example.test', ['r@dest.test'], 'Message-ID: <after@full.test>\r\nSubject: after\r\n\r\nx\r\n')).toMatch(/^250 /);
      expect(second.proc.exitCode).toBeNull();
      expect(s.inside(['ls', '-A', `${s.spoolDir}/tmp`]).split('\n').filter((f) => f.startsWith('.probe'))).toEqual([]);
    });

    it('keeps spool.minFreeBytes free against many fast clients at once', async () => {
      const s = await setup('4m');
      const floor = 2 * 1024 * 1024;
      const relay = s.startRelay({ minFreeBytes: floor });
      await waitForPort(s.port, { what: 'relay in the mount namespace' });
      const df = () => Number(s.inside(['df', '--output=avail', '-B1', s.spoolDir]).trim().split('\n')[1]);
      const before = df();
      // 16 clients x 200 KB = 3.2 MB against ~2 MiB of room above the floor, all inside one second.
      const body = ('y'.repeat(998) + '\r\n').repeat(200);
      const replies = await Promise.all(Array.from({ length: 16 }, (_, i) => submit(s.port, 'app@example.test', ['r@dest.test'], `Message-ID: <fast${i}@full.test>\r\nSubject: ${i}\r\n\r\n${body}`)));
      const accepted = replies.filter((r) => r.startsWith('250')).length;
      expect(accepted).toBeGreaterThan(0);
      expect(replies.filter((r) => !r.startsWith('250')).every((r) => /^452 4\.3\.1 /.test(r))).toBe(true);
      console.log(`full disk: ${accepted} of 16 accepted with ${before} bytes free before, floor ${floor}`);
      // What intake took fits above the floor (a few KiB of records and trace headers aside).
      // The free space itself is not the measure: the queue's own writes (a deferred message
      // copied out of the journal) may use the room the floor keeps for them.
      expect(accepted * body.length).toBeLessThanOrEqual(before - floor + 64 * 1024);
      expect(relay.proc.exitCode).toBeNull();
    });
  },
  { root: true },
);
