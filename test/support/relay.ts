/**
 * Starts a real relay in this process on free loopback ports with a throwaway spool,
 * a users file and a self-signed certificate, for tests that cross modules.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { parseConfig, type RelayConfigInput } from '../../relay/config.js';
import { devSetup } from '../../relay/dev.js';
import { startRelay, type RunningRelay } from '../../relay/main.js';
import { Spool, type Envelope } from '../../relay/spool/spool.js';

export interface TestRelay extends RunningRelay {
  dir: string;
  user: string;
  password: string;
  certFile: string;
  outbox: string;
  /** The envelopes of the messages in the spool, as a restart would find them (read-only). */
  spooled(): Promise<Envelope[]>;
  delivered(): Buffer[];
  stop(): Promise<void>;
}

type Overrides = Partial<Omit<RelayConfigInput, 'listeners'>> & { listeners?: RelayConfigInput['listeners'] };

export async function startTestRelay(overrides: Overrides = {}, options: { log?: pino.Logger } = {}): Promise<TestRelay> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-relay-'));
  const dev = await devSetup(dir);
  const raw = {
    hostname: 'relay.test',
    spool: { dir: 'spool' },
    listeners: [
      { name: 'open', address: '127.0.0.1', port: 0, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] },
      { name: 'submission', address: '127.0.0.1', port: 0, tls: 'starttls', auth: 'required' },
    ],
    tls: { certFile: 'tls/dev.crt', keyFile: 'tls/dev.key' },
    auth: { usersFile: 'users' },
    delivery: { route: { type: 'file', dir: 'outbox' } },
    http: { address: '127.0.0.1', port: 0 },
    ...overrides,
  };
  fs.writeFileSync(path.join(dir, 'relay.yaml'), JSON.stringify(raw, null, 2));
  const config = parseConfig(raw, dir, 'test config');
  const log = options.log ?? pino({ level: process.env.MF_TEST_LOG ?? 'silent' });
  const relay = await startRelay({ config, configFile: path.join(dir, 'relay.yaml'), log });
  const outbox = path.join(dir, 'outbox');
  return Object.assign(relay, {
    dir,
    user: dev.user,
    password: dev.password,
    certFile: dev.certFile,
    outbox,
    spooled: async () => (await new Spool(path.join(dir, 'spool')).scan()).entries.map((e) => e.envelope),
    delivered: () => (fs.existsSync(outbox) ? fs.readdirSync(outbox).filter((f) => f.endsWith('.eml') && !f.startsWith('.')).sort().map((f) => fs.readFileSync(path.join(outbox, f))) : []),
    stop: async () => {
      await relay.shutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** Polls until check() is true or the time runs out (then throws with the label). */
export async function waitFor(check: () => boolean | Promise<boolean>, label: string, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${label}`);
}

/** A logger that keeps its JSON lines in memory, for tests that assert what was logged. */
export function capturedLog(): { log: pino.Logger; lines: () => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, lines: () => lines };
}
