/**
 * A spool that runs out of space: the relay keeps running, answers 452 4.3.1 for what it
 * cannot store, and every message it did acknowledge is delivered once a destination is
 * back. The spool is a 1 MiB tmpfs in a private mount namespace (no host mount is touched).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { describePeer } from './peers/availability.js';
import { freePort, waitForPort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { CLI } from './support/process.js';
import { waitFor } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

describePeer(
  'spool on a full disk',
  ['unshare', 'nsenter', 'mount'],
  () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-full-'));
    const spoolDir = path.join(dir, 'spool');
    fs.mkdirSync(spoolDir);
    let holder: ChildProcess | undefined;
    let relay: ChildProcess | undefined;
    let sink: ScriptedSink | undefined;
    let output = '';

    afterAll(async () => {
      relay?.kill('SIGKILL');
      holder?.kill('SIGKILL');
      await sink?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('answers 452 when the spool is full, keeps running, and delivers everything it acknowledged', async () => {
      // A process that owns a mount namespace with a tiny tmpfs on spoolDir; the relay joins it.
      holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs -o size=1m tmpfs ${spoolDir} && echo ready && exec sleep 600`]);
      await new Promise<void>((resolve, reject) => {
        holder!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        holder!.once('exit', (code) => reject(new Error(`mount namespace holder exited (${code})`)));
      });
      const port = await freePort();
      const sinkPort = await freePort();
      fs.writeFileSync(
        path.join(dir, 'relay.yaml'),
        JSON.stringify({
          hostname: 'relay.test',
          spool: { dir: spoolDir, minFreeBytes: 0 },
          listeners: [{ name: 'in', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
          delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sinkPort, tls: 'none' } },
          retry: { minBackoff: '300ms', maxBackoff: '300ms' },
          http: { address: '127.0.0.1', port: 0 },
        }),
      );
      relay = spawn('nsenter', ['-t', String(holder.pid), '-m', process.execPath, CLI, 'relay', '--config', path.join(dir, 'relay.yaml')]);
      relay.stdout!.on('data', (d: Buffer) => (output += d));
      relay.stderr!.on('data', (d: Buffer) => (output += d));
      await waitForPort(port, { what: 'relay in the mount namespace' });

      const acknowledged: string[] = [];
      const refusals: string[] = [];
      const filler = 'x'.repeat(8000);
      for (let i = 0; i < 400 && refusals.length < 5; i++) {
        const id = `m${i}@full.test`;
        const reply = await submit(port, 'app@example.test', ['r@dest.test'], `Message-ID: <${id}>\r\nSubject: ${i}\r\n\r\n${filler}\r\n`);
        if (reply.startsWith('250')) acknowledged.push(id);
        else refusals.push(reply);
      }
      expect(acknowledged.length).toBeGreaterThan(10);
      expect(refusals).toHaveLength(5);
      for (const r of refusals) expect(r).toMatch(/^452 4\.3\.1 /);
      expect(relay.exitCode).toBeNull();
      expect(output).toMatch(/could not store message/);

      sink = await startScriptedSink({ port: sinkPort });
      await waitFor(() => acknowledged.every((id) => sink!.messages.some((m) => m.raw.includes(`<${id}>`))), 'every acknowledged message at the destination', 30_000);
      const delivered = new Set(sink.messages.map((m) => /Message-ID: <([^>]+)>/.exec(m.raw.toString())?.[1]));
      expect([...delivered].filter((id) => id && !acknowledged.includes(id))).toEqual([]);
    });
  },
  { root: true },
);
