/** `mailfleet send` (the real command, as a process) against the relay itself. */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnMailfleet } from './support/process.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';

describe('mailfleet send against the relay', () => {
  let relay: TestRelay;
  let passwordFile: string;
  beforeAll(async () => {
    relay = await startTestRelay({ senderDomains: [{ domain: 'example.test' }] });
    passwordFile = path.join(relay.dir, 'password');
    fs.writeFileSync(passwordFile, relay.password + '\n');
  });
  afterAll(() => relay.stop());

  async function send(args: string[]) {
    const p = spawnMailfleet(['send', '--server', `127.0.0.1:${relay.ports.submission}`, '--starttls', '--ca', relay.certFile, '--user', 'dev', '--password-file', passwordFile, ...args]);
    const code = await p.exited;
    return { code, out: p.output() };
  }

  it('sends through STARTTLS and AUTH, shows each step, and the message is delivered', async () => {
    const { code, out } = await send(['--from', 'app@example.test', '--to', 'you@dest.test', '--subject', 'from mailfleet send']);
    expect(code).toBe(0);
    expect(out).toMatch(/STARTTLS/);
    expect(out).toMatch(/TLSv1\.[23]/);
    expect(out).toMatch(/250 2\.0\.0 Ok: queued as/);
    expect(out).not.toContain(relay.password);
    await waitFor(() => relay.delivered().some((m) => m.toString().includes('Subject: from mailfleet send')), 'the message in the outbox');
  });

  it('explains a sender domain the relay does not allow', async () => {
    const { code, out } = await send(['--from', 'ceo@bank.test', '--to', 'you@dest.test']);
    expect(code).toBe(1);
    expect(out).toMatch(/550 5\.7\.1 Sender <ceo@bank\.test> not allowed/);
    expect(out).toMatch(/diagnosis: .*sender/i);
  });

  it('explains a wrong password', async () => {
    fs.writeFileSync(path.join(relay.dir, 'wrong'), 'not-it\n');
    const p = spawnMailfleet(['send', '--server', `127.0.0.1:${relay.ports.submission}`, '--starttls', '--ca', relay.certFile, '--user', 'dev', '--password-file', path.join(relay.dir, 'wrong'), '--from', 'app@example.test', '--to', 'you@dest.test']);
    expect(await p.exited).toBe(1);
    expect(p.output()).toMatch(/535 5\.7\.8/);
    expect(p.output()).toMatch(/diagnosis: .*(password|credentials)/i);
  });
});
