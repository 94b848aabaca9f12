/**
 * The README's first command: `npm start` runs `mailfleet relay` on the development defaults
 * (loopback ports 2525 and 2587, ./.mailfleet). Mail from example.test reaches the outbox
 * DKIM-signed with the keys made on first start.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dkimVerify } from 'mailauth';
import { afterAll, describe, expect, it } from 'vitest';
import { dkimPublicKeyFromPem } from '../relay/dkim-keys.js';
import { spawnMailfleet, type RelayProcess } from './support/process.js';
import { waitFor } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

describe('mailfleet relay without --config (npm start)', () => {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-dev-'));
  let relay: RelayProcess | undefined;
  afterAll(async () => {
    relay?.child.kill('SIGTERM');
    await relay?.exited;
    fs.rmSync(cwd, { recursive: true, force: true });
  });

  it('signs mail from example.test with the keys it made, in both algorithms', async () => {
    relay = spawnMailfleet(['relay'], { cwd });
    // The banner comes once the relay has started, after its "listening" lines.
    await relay.waitForLog(/try: +npx mailfleet send/);
    expect(relay.output()).toMatch(/"event":"listening".*"port":2587/);
    expect(relay.output()).toMatch(/DKIM: +mail From example\.test is signed/);
    expect(relay.output()).toContain(`config:  ${cwd}/.mailfleet/relay.yaml  (these defaults as a file: mailfleet records and mailfleet suppressions read it)`);
    const message = 'From: App <app@example.test>\r\nTo: you@example.test\r\nSubject: hello from npm start\r\n\r\nHello.\r\n';
    expect(await submit(2525, 'app@example.test', ['you@example.test'], message)).toMatch(/^250/);
    const outbox = path.join(cwd, '.mailfleet', 'outbox');
    await waitFor(() => fs.existsSync(outbox) && fs.readdirSync(outbox).some((f) => f.endsWith('.eml')), 'the message in the outbox');
    const eml = fs.readFileSync(path.join(outbox, fs.readdirSync(outbox).find((f) => f.endsWith('.eml'))!));

    // The records as `mailfleet records` would publish them, from the generated key files.
    const keys = new Map<string, string>();
    for (const file of fs.readdirSync(path.join(cwd, '.mailfleet', 'dkim'))) {
      const selector = /^example\.test\.(.+)\.key$/.exec(file)![1]!;
      const pub = dkimPublicKeyFromPem(fs.readFileSync(path.join(cwd, '.mailfleet', 'dkim', file), 'utf8'));
      keys.set(`${selector}._domainkey.example.test`, `v=DKIM1; k=${pub.algorithm === 'rsa-sha256' ? 'rsa' : 'ed25519'}; p=${pub.publicKey}`);
    }
    const resolver = async (name: string) => {
      const value = keys.get(name);
      if (!value) throw Object.assign(new Error(`no TXT for ${name}`), { code: 'ENOTFOUND' });
      return [[value]];
    };
    const { results } = await dkimVerify(eml, { resolver: resolver as never });
    expect(results.map((r) => `${r.selector}:${r.status.result}`).sort()).toEqual(['dev-ed25519:pass', 'dev-rsa:pass']);
  });
});
