/**
 * One suppression list for a fleet (relay/fleet-suppressions.ts), as a sender sees it: a
 * recipient who unsubscribes through one relay's link is refused by the other relay of the
 * fleet within a second, a relay that starts later refuses them from its first message on,
 * a hard bounce at one relay is known to the others, and so is a removal (a peer's older
 * entry does not bring the address back). Real relays, talking over their
 * HTTP endpoints with the fleet's handoff token; a request without the token is refused.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SuppressionList } from '../relay/suppression.js';
import { freePort } from './peers/ports.js';
import { startScriptedSink, type ScriptedSink } from './peers/scripted-sink.js';
import { spawnMailfleet } from './support/process.js';
import { startTestRelay, waitFor, type TestRelay } from './support/relay.js';
import { submit } from './support/smtp-talk.js';

const MESSAGE = (to: string) => `From: News <news@sender.test>\r\nTo: ${to}\r\nSubject: News\r\n\r\nHello.\r\n`;

describe('a fleet shares one suppression list', () => {
  const stops: (() => unknown)[] = [];
  let dir: string;
  let sink: ScriptedSink;
  let a: TestRelay;
  let b: TestRelay;
  let ports: { a: number; b: number; c: number };
  const relayWith = async (port: number, peers: number[]) => {
    const linksPort = await freePort();
    const relay = await startTestRelay({
      http: { address: '127.0.0.1', port },
      handoff: { tokenFile: path.join(dir, 'token'), peers: peers.map((p) => `127.0.0.1:${p}`) },
      senderDomains: [{ domain: 'sender.test', unsubscribe: { url: `http://127.0.0.1:${linksPort}` } }],
      links: { keyFile: path.join(dir, 'links-key'), port: linksPort },
      delivery: { route: { type: 'smarthost', host: '127.0.0.1', port: sink.port, tls: 'none' } },
    });
    stops.push(relay.stop);
    return relay;
  };
  const answer = async (relay: TestRelay, to: string) => (await submit(relay.ports.open!, 'news@sender.test', [to], MESSAGE(to))).slice(0, 3);

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-fleet-supp-'));
    stops.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'token'), 'fleet-token-0123456789');
    fs.writeFileSync(path.join(dir, 'links-key'), 'links-key-0123456789abcdefghijklmnopqrstuvwxyz');
    // The sink refuses gone@ for good (a hard bounce), takes the rest.
    sink = await startScriptedSink({ replies: ({ rcpt }) => (rcpt.startsWith('gone@') ? { code: 550, message: '5.1.1 <gone@receiver.test>: no such user' } : undefined) });
    stops.push(sink.stop);
    ports = { a: await freePort(), b: await freePort(), c: await freePort() };
    a = await relayWith(ports.a, [ports.b, ports.c]);
    b = await relayWith(ports.b, [ports.a, ports.c]);
  });
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  it("an unsubscribe through one relay's link is honoured by the other within a second", async () => {
    expect(await answer(a, 'reader@receiver.test')).toBe('250');
    await waitFor(() => sink.messages.some((m) => m.envelope.to.includes('reader@receiver.test')), 'the message at the sink');
    const raw = sink.messages.find((m) => m.envelope.to.includes('reader@receiver.test'))!.raw.toString();
    const link = /List-Unsubscribe: <([^>]+)>/.exec(raw)![1]!;
    const res = await fetch(link, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'List-Unsubscribe=One-Click' });
    expect(res.status).toBe(200);
    expect(await answer(a, 'reader@receiver.test')).toBe('550');
    const started = Date.now();
    await waitFor(async () => (await answer(b, 'reader@receiver.test')) === '550', 'relay B refusing the recipient', 5000);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(b.suppressions.list()[0]).toMatchObject({ senderDomain: 'sender.test', recipient: 'reader@receiver.test', permanent: true });
  });

  it('a hard bounce at one relay is known to the other', async () => {
    expect(await answer(b, 'gone@receiver.test')).toBe('250');
    // A is not sent to: it would bounce there too and list the address itself.
    await waitFor(() => !!a.suppressions.lookup('news@sender.test', 'gone@receiver.test'), 'relay A listing the address B bounced', 10_000);
    expect(a.suppressions.lookup('news@sender.test', 'gone@receiver.test')).toMatchObject({ statusCode: '5.1.1', senderDomain: 'sender.test' });
  });

  it('a relay that starts later takes the list from a peer before its first message', async () => {
    const c = await relayWith(ports.c, [ports.a, ports.b]);
    expect(await answer(c, 'reader@receiver.test')).toBe('550');
    expect(await answer(c, 'gone@receiver.test')).toBe('550');
    expect(await answer(c, 'someone@receiver.test')).toBe('250');
  });

  it("a removal at one relay (mailfleet suppressions remove) reaches the others, and a peer's older entry does not bring the recipient back", async () => {
    expect(await answer(b, 'gone@receiver.test')).toBe('550');
    const p = spawnMailfleet(['suppressions', 'remove', 'gone@receiver.test', '--config', path.join(a.dir, 'relay.yaml')]);
    expect(await p.exited, p.output()).toBe(0);
    const started = Date.now();
    await waitFor(() => !b.suppressions.lookup('news@sender.test', 'gone@receiver.test'), 'relay B dropping the address', 10_000);
    // A's poll of its file (1 s) and the batch (0.5 s).
    expect(Date.now() - started).toBeLessThan(3000);
    expect(b.suppressions.listRemovals()).toMatchObject([{ recipient: 'gone@receiver.test' }]);
    // A peer that missed the removal shares the entry it still has: refused, as listed before the removal.
    const stale = { senderDomain: 'sender.test', recipient: 'gone@receiver.test', since: new Date(Date.now() - 60_000).toISOString(), statusCode: '5.1.1', reply: '550 5.1.1 no such user' };
    const res = await fetch(`http://127.0.0.1:${ports.b}/internal/suppressions`, { method: 'POST', headers: { authorization: 'Bearer fleet-token-0123456789', 'content-type': 'application/json' }, body: JSON.stringify({ version: 1, entries: [stale] }) });
    expect(await res.text()).toBe('0\n');
    expect(b.suppressions.lookup('news@sender.test', 'gone@receiver.test')).toBeUndefined();
  });

  it('refuses a request without the fleet token or a body it cannot read, and skips a bad entry without losing the rest of its batch', async () => {
    const url = `http://127.0.0.1:${ports.a}/internal/suppressions`;
    expect((await fetch(url)).status).toBe(401);
    const post = (body: string) => fetch(url, { method: 'POST', headers: { authorization: 'Bearer fleet-token-0123456789', 'content-type': 'application/json' }, body });
    const bad = await post(JSON.stringify({ version: 2, entries: [] }));
    expect(bad.status).toBe(400);
    expect(await bad.text()).toMatch(/version/);
    // From a peer of a version that listed anything a DSN named (an empty Final-Recipient).
    const entry = { senderDomain: 'sender.test', since: new Date().toISOString(), statusCode: '5.1.1', reply: '550 5.1.1 unknown' };
    const mixed = await post(JSON.stringify({ version: 1, entries: [{ ...entry, recipient: 'x@y.test', since: 'yesterday' }, { ...entry, recipient: '' }, { ...entry, recipient: 'kept@y.test' }] }));
    expect(mixed.status).toBe(200);
    expect(await answer(a, 'x@y.test')).toBe('250');
    expect(await answer(a, 'kept@y.test')).toBe('550');
  });

  it('a removal made with the CLI while a relay was stopped reaches the others when it starts', async () => {
    const entry = { senderDomain: 'sender.test', recipient: 'offline@receiver.test', since: new Date(Date.now() - 60_000).toISOString(), statusCode: '5.1.1', reply: '550 5.1.1 no such user' };
    for (const port of [ports.a, ports.b]) await fetch(`http://127.0.0.1:${port}/internal/suppressions`, { method: 'POST', headers: { authorization: 'Bearer fleet-token-0123456789', 'content-type': 'application/json' }, body: JSON.stringify({ version: 1, entries: [entry] }) });
    expect(await answer(a, 'offline@receiver.test')).toBe('550');
    // The third pod's spool, as `mailfleet suppressions remove` leaves it while that relay is down.
    const spool = fs.mkdtempSync(path.join(dir, 'spool-c-'));
    const before = await SuppressionList.open(spool, { ttl: () => 30 * 86400 });
    expect(before.merge({ ...entry, since: Date.parse(entry.since) })).toBe(true);
    await before.close();
    const cli = await SuppressionList.open(spool, { ttl: () => 30 * 86400 });
    expect(await cli.remove('offline@receiver.test')).toHaveLength(1);
    await cli.close();
    const c = await startTestRelay({ spool: { dir: spool }, http: { address: '127.0.0.1', port: await freePort() }, handoff: { tokenFile: path.join(dir, 'token'), peers: [`127.0.0.1:${ports.a}`, `127.0.0.1:${ports.b}`] } });
    stops.push(c.stop);
    await waitFor(() => !a.suppressions.lookup('news@sender.test', 'offline@receiver.test') && !b.suppressions.lookup('news@sender.test', 'offline@receiver.test'), 'A and B dropping the address', 5000);
    expect(await answer(a, 'offline@receiver.test')).toBe('250');
  });
});
