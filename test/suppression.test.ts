/**
 * The suppression list end to end: a destination answers 550 5.1.1 for one recipient; after
 * the bounce the address is listed (`mailfleet suppressions list`), refused at RCPT for the
 * same sender domain only, removable while the relay runs, kept over a restart (the relay as
 * a process, with its queue in a worker thread), counted in /metrics; the `bounce` action;
 * the admin endpoint.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { spawnMailfleet, type RelayProcess } from './support/process.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { SmtpTalk, submit } from './support/smtp-talk.js';

const GONE = 'gone@dest.test';
const MSG = (subject: string) => `From: app@example.test\r\nTo: ${GONE}\r\nSubject: ${subject}\r\n\r\nHello.\r\n`;
const SUPPRESSED = /^550 5\.1\.1 <gone@dest\.test>: suppressed since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ after a hard bounce \(550 5\.1\.1 <gone@dest\.test>: user unknown\); remove with mailfleet suppressions remove$/;

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A destination that knows every address but gone@dest.test; counts the RCPTs it was offered for it. */
async function destination(): Promise<{ sink: ScriptedSink; goneAttempts: () => number }> {
  let gone = 0;
  const sink = await startScriptedSink({
    replies: ({ rcpt }) => {
      if (rcpt !== GONE) return undefined;
      gone++;
      return { code: 550, message: `5.1.1 <${GONE}>: user unknown` };
    },
  });
  cleanups.push(() => sink.stop());
  return { sink, goneAttempts: () => gone };
}

async function relayTo(sink: ScriptedSink, extra: Parameters<typeof startTestRelay>[0] = {}): Promise<TestRelay> {
  const relay = await startTestRelay({ delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } }, ...extra });
  cleanups.push(() => relay.stop());
  return relay;
}

/** The reply to RCPT TO in a fresh transaction from `from`. */
async function rcpt(port: number, from: string, to: string): Promise<string> {
  const { talk } = await SmtpTalk.connect(port);
  try {
    await talk.send('EHLO client.test');
    expect(await talk.send(`MAIL FROM:<${from}>`)).toMatch(/^250/);
    return await talk.send(`RCPT TO:<${to}>`);
  } finally {
    await talk.quit();
  }
}

async function cli(...args: string[]): Promise<{ code: number | string; output: string }> {
  const p = spawnMailfleet(['suppressions', ...args]);
  const code = await p.exited;
  return { code, output: p.output() };
}

function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`mailfleet_relay_${series} `));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

/** The DSN for gone@ has reached the sender: the bounce is complete. */
const waitForDsn = (sink: ScriptedSink, n = 1) => waitFor(() => sink.messages.filter((m) => m.envelope.from === '').length >= n, `${n} DSN(s) at the sink`);

describe('suppression list (action refuse)', () => {
  it('lists a 550 5.1.1 recipient, refuses it at RCPT for that sender domain only, counts it, and takes a removal while running', async () => {
    const { sink, goneAttempts } = await destination();
    const relay = await relayTo(sink);
    const config = path.join(relay.dir, 'relay.yaml');
    const port = relay.ports.open!;

    expect((await cli('list', '--config', config)).output).toMatch(/^no suppressed recipients$/m);
    expect(await submit(port, 'app@example.test', ['ok@dest.test', GONE], MSG('first'))).toMatch(/^250/);
    await waitForDsn(sink);
    expect(goneAttempts()).toBe(1);

    const listed = await cli('list', '--config', config);
    expect(listed.code).toBe(0);
    expect(listed.output).toMatch(/^SENDER DOMAIN +RECIPIENT +SINCE +EXPIRES +LAST REPLY$/m);
    expect(listed.output).toMatch(/^example\.test +gone@dest\.test +\S+Z +\S+Z +550 5\.1\.1 <gone@dest\.test>: user unknown$/m);
    const json = JSON.parse((await cli('list', '--config', config, '--json')).output) as { senderDomain: string; recipient: string; since: string; expires: string; statusCode: string }[];
    expect(json).toHaveLength(1);
    expect(json[0]).toMatchObject({ senderDomain: 'example.test', recipient: GONE, statusCode: '5.1.1' });
    // The default ttl: 30 days.
    expect(Date.parse(json[0]!.expires) - Date.parse(json[0]!.since)).toBe(30 * 86400_000);

    // The next message from the same sender domain (another user of it) is refused at RCPT; other recipients still go.
    const { talk } = await SmtpTalk.connect(port);
    await talk.send('EHLO client.test');
    await talk.send('MAIL FROM:<billing@example.test>');
    expect(await talk.send(`RCPT TO:<${GONE}>`)).toMatch(SUPPRESSED);
    expect(await talk.send('RCPT TO:<ok@dest.test>')).toMatch(/^250/);
    expect(await talk.data(MSG('second'))).toMatch(/^250/);
    await talk.quit();
    await sink.waitForMessages(3);
    expect(sink.messages[2]!.envelope).toEqual({ from: 'billing@example.test', to: ['ok@dest.test'] });

    // Another sender domain is not affected (and its own bounce suppresses it for that domain too).
    expect(await submit(port, 'app@other.test', [GONE], MSG('other domain'))).toMatch(/^250 2\.0\.0 Ok: queued/);
    await waitForDsn(sink, 2);
    expect(goneAttempts()).toBe(2);
    expect((await cli('list', '--config', config, '--domain', 'other.test')).output).toMatch(/^other\.test +gone@dest\.test /m);

    const metrics = await relay.metricsText();
    expect(metric(metrics, 'suppression_additions_total')).toBe(2);
    expect(metric(metrics, 'suppression_refusals_total{action="refuse"}')).toBe(1);
    expect(metric(metrics, 'smtp_rejections_total{reason="suppressed"}')).toBe(1);

    // Removal by the CLI, the relay running: accepted again within a couple of seconds, for that domain only.
    const removed = await cli('remove', '--config', config, '--domain', 'example.test', 'Gone@Dest.Test');
    expect(removed.code).toBe(0);
    expect(removed.output).toMatch(/^removed gone@dest\.test for sender domain example\.test \(suppressed since \S+Z\)$/m);
    const started = Date.now();
    await waitFor(() => !relay.suppressions.lookup('app@example.test', GONE), 'the relay to read the removal', 3000);
    const noticedMs = Date.now() - started;
    console.log(`suppression removal by the CLI noticed by the running relay after ${noticedMs} ms`);
    expect(noticedMs).toBeLessThan(2500);
    expect(await rcpt(port, 'app@example.test', GONE)).toMatch(/^250/);
    expect(await rcpt(port, 'app@other.test', GONE)).toMatch(/^550 5\.1\.1 .*suppressed since/);

    expect(await cli('remove', '--config', config, '--domain', 'example.test', GONE)).toEqual({ code: 1, output: `${GONE} is not on the suppression list for example.test\n` });
    // Without --domain: every sender domain.
    expect((await cli('remove', '--config', config, GONE)).output).toMatch(/^removed gone@dest\.test for sender domain other\.test/m);
    expect(JSON.parse((await cli('list', '--config', config, '--json')).output)).toEqual([]);
  });

  it('does nothing for policy refusals (5.7.1) or when disabled', async () => {
    const sink = await startScriptedSink({ replies: ({ rcpt }) => (rcpt === GONE ? { code: 550, message: '5.7.1 <gone@dest.test>: rejected by policy' } : undefined) });
    cleanups.push(() => sink.stop());
    const relay = await relayTo(sink);
    expect(await submit(relay.ports.open!, 'app@example.test', [GONE], MSG('policy'))).toMatch(/^250/);
    await waitForDsn(sink);
    expect(relay.suppressions.list()).toEqual([]);

    const { sink: sink2 } = await destination();
    const off = await relayTo(sink2, { suppression: { enabled: false } });
    expect(await submit(off.ports.open!, 'app@example.test', [GONE], MSG('off'))).toMatch(/^250/);
    await waitForDsn(sink2);
    expect(await rcpt(off.ports.open!, 'app@example.test', GONE)).toMatch(/^250/);
    expect(metric(await off.metricsText(), 'suppression_additions_total')).toBe(0);
  });
});

describe('suppression list (action bounce)', () => {
  it('accepts a suppressed recipient and bounces it with a DSN, without an attempt at the destination', async () => {
    const { sink, goneAttempts } = await destination();
    const relay = await relayTo(sink, { suppression: { action: 'bounce' } });
    const port = relay.ports.open!;
    expect(await submit(port, 'app@example.test', [GONE], MSG('first'))).toMatch(/^250/);
    await waitForDsn(sink);

    expect(await submit(port, 'app@example.test', ['ok@dest.test', GONE], MSG('second'))).toMatch(/^250/);
    await waitForDsn(sink, 2);
    await waitFor(async () => (await relay.spooled()).length === 0, 'the spool to empty');
    expect(goneAttempts()).toBe(1);
    const original = sink.messages.find((m) => m.raw.toString().includes('Subject: second') && m.envelope.from);
    expect(original!.envelope.to).toEqual(['ok@dest.test']);
    const dsn = sink.messages.filter((m) => m.envelope.from === '')[1]!;
    expect(dsn.envelope.to).toEqual(['app@example.test']);
    const text = dsn.raw.toString().replace(/\r\n\s+/g, ' ');
    expect(text).toMatch(/Final-Recipient: rfc822; ?gone@dest\.test/);
    expect(text).toMatch(/Status: 5\.1\.1/);
    expect(text).toMatch(/Diagnostic-Code: X-Mailfleet; ?suppressed since \S+Z after a hard bounce \(550 5\.1\.1 <gone@dest\.test>: user unknown\); not attempted/);
    expect(text).toMatch(/Subject: second/);
    const metrics = await relay.metricsText();
    expect(metric(metrics, 'suppression_refusals_total{action="bounce"}')).toBe(1);
    expect(metric(metrics, 'suppression_additions_total')).toBe(1);
  });
});

describe('suppression admin endpoint', () => {
  it('answers 404 when no token file is configured', async () => {
    const { sink } = await destination();
    const relay = await relayTo(sink);
    const res = await fetch(`http://127.0.0.1:${relay.httpPort}/admin/suppressions`, { headers: { authorization: 'Bearer anything' } });
    expect(res.status).toBe(404);
  });

  it('lists and deletes with the bearer token, 401 without it or with a wrong or rotated-out one', async () => {
    const { sink } = await destination();
    const relay = await relayTo(sink, { http: { address: '127.0.0.1', port: 0, adminTokenFile: 'admin-token' } });
    const tokenFile = path.join(relay.dir, 'admin-token');
    fs.writeFileSync(tokenFile, 's3cret-token\n');
    const base = `http://127.0.0.1:${relay.httpPort}/admin/suppressions`;
    const as = (token?: string, method = 'GET', url = base) => fetch(url, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });

    expect(await submit(relay.ports.open!, 'app@example.test', [GONE], MSG('first'))).toMatch(/^250/);
    await waitForDsn(sink);

    const anonymous = await as();
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await as('wrong-token')).status).toBe(401);
    expect((await as('s3cret-token-but-longer')).status).toBe(401);

    const listed = await as('s3cret-token');
    expect(listed.status).toBe(200);
    expect(listed.headers.get('content-type')).toBe('application/json');
    expect(await listed.json()).toEqual({
      suppressions: [{ senderDomain: 'example.test', recipient: GONE, since: expect.any(String), expires: expect.any(String), statusCode: '5.1.1', reply: `550 5.1.1 <${GONE}>: user unknown` }],
    });
    expect(await (await as('s3cret-token', 'GET', `${base}?domain=other.test`)).json()).toEqual({ suppressions: [] });

    // A rotated Secret applies at the next request.
    fs.writeFileSync(tokenFile, 'rotated-token');
    expect((await as('s3cret-token')).status).toBe(401);
    expect((await as('rotated-token', 'DELETE', `${base}/other.test/${GONE}`)).status).toBe(404);
    const deleted = await as('rotated-token', 'DELETE', `${base}/example.test/${encodeURIComponent(GONE)}`);
    expect(deleted.status).toBe(200);
    expect(await deleted.json()).toMatchObject({ removed: [{ senderDomain: 'example.test', recipient: GONE }] });
    // At once, in this relay: no polling delay for its own removal.
    expect(await rcpt(relay.ports.open!, 'app@example.test', GONE)).toMatch(/^250/);
    expect((await as('rotated-token', 'DELETE', `${base}/example.test/${GONE}`)).status).toBe(404);
  });
});

describe('suppression list in the relay process', () => {
  it('reaches the list from the queue worker thread, and survives a restart', async () => {
    const { sink, goneAttempts } = await destination();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-supp-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    const config = path.join(dir, 'relay.yaml');
    fs.writeFileSync(
      config,
      JSON.stringify({
        hostname: 'relay.test',
        spool: { dir: 'spool', minFreeBytes: 0 },
        listeners: [{ name: 'in', address: '127.0.0.1', port, tls: 'none', auth: 'none', trustedNetworks: ['127.0.0.0/8'] }],
        delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } },
        http: { address: '127.0.0.1', port: 0 },
      }),
    );
    const start = async (): Promise<RelayProcess> => {
      const p = spawnMailfleet(['relay', '--config', config]);
      cleanups.push(async () => {
        if (p.child.exitCode === null && p.child.signalCode === null) {
          p.child.kill('SIGKILL');
          await p.exited;
        }
      });
      await p.waitForLog(/"event":"listening"/);
      return p;
    };

    let relay = await start();
    expect(await submit(port, 'app@example.test', [GONE], MSG('first'))).toMatch(/^250/);
    await waitForDsn(sink);
    await relay.waitForLog(/"event":"suppression_added".*"statusCode":"5\.1\.1"/);
    expect(await rcpt(port, 'app@example.test', GONE)).toMatch(SUPPRESSED);

    relay.child.kill('SIGTERM');
    expect(await relay.exited).toBe(0);
    relay = await start();
    expect(await rcpt(port, 'app@example.test', GONE)).toMatch(SUPPRESSED);
    expect((await cli('list', '--config', config)).output).toMatch(/^example\.test +gone@dest\.test /m);
    expect(goneAttempts()).toBe(1);
  });
});
