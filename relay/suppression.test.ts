import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { describeSuppression, isHardBounce, SUPPRESSION_FILE, SuppressionList } from './suppression.js';

const DAY = 86400_000;
const T0 = Date.parse('2026-11-28T10:00:00Z');

const bounce = (over: Partial<{ sender: string; recipient: string; statusCode: string; reply: string; at: number }> = {}) => ({
  sender: 'app@example.test',
  recipient: 'gone@dest.test',
  statusCode: '5.1.1',
  reply: '550 5.1.1 <gone@dest.test>: user unknown',
  at: T0,
  ...over,
});

describe('suppression list', () => {
  let dir: string;
  let now: number;
  const opts = (extra: object = {}) => ({ ttl: () => 30 * 86400, now: () => now, ...extra });
  const file = () => path.join(dir, SUPPRESSION_FILE);
  const lines = () => fs.readFileSync(file(), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  const open = (extra: object = {}) => SuppressionList.open(dir, opts({ compact: true, ...extra }));

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-supp-'));
    now = T0;
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('counts address failures as hard bounces, not policy, full mailboxes, size or bare 5xx', () => {
    for (const code of ['5.1.1', '5.1.2', '5.1.3', '5.1.6', '5.1.10', '5.2.1']) expect(isHardBounce(code), code).toBe(true);
    for (const code of ['5.7.1', '5.7.26', '5.2.2', '5.2.3', '5.3.4', '5.0.0', '5.4.4', '4.1.1', '2.0.0']) expect(isHardBounce(code), code).toBe(false);
  });

  it('suppresses per sender domain, case-insensitively, and never for the null sender', async () => {
    const list = await open();
    expect(list.add(bounce())).toBe(true);
    expect(list.lookup('other@EXAMPLE.test', 'Gone@Dest.Test')).toMatchObject({ senderDomain: 'example.test', recipient: 'gone@dest.test', since: T0, statusCode: '5.1.1' });
    expect(list.lookup('app@another.test', 'gone@dest.test')).toBeUndefined();
    expect(list.lookup('', 'gone@dest.test')).toBeUndefined();
    expect(list.lookup('app@example.test', 'someone@dest.test')).toBeUndefined();
    // Already on the list: refreshed, not a new addition.
    expect(list.add(bounce({ at: T0 + 1000 }))).toBe(false);
    expect(list.lookup('app@example.test', 'gone@dest.test')!.since).toBe(T0 + 1000);
    await list.close();
  });

  it('ignores failures that are not hard bounces, and DSNs (null sender)', async () => {
    const list = await open();
    expect(list.add(bounce({ statusCode: '5.7.1', reply: '550 5.7.1 spam' }))).toBe(false);
    expect(list.add(bounce({ statusCode: '5.2.2', reply: '552 5.2.2 mailbox full' }))).toBe(false);
    expect(list.add(bounce({ sender: '' }))).toBe(false);
    expect(list.list()).toEqual([]);
    await list.close();
    expect(lines()).toEqual([]);
  });

  it('lets entries expire after the ttl (on lookup and in the list), following a changed ttl', async () => {
    let ttlDays = 30;
    const list = await open({ ttl: () => ttlDays * 86400 });
    list.add(bounce());
    now = T0 + 30 * DAY - 1;
    expect(list.lookup('app@example.test', 'gone@dest.test')).toBeDefined();
    expect(list.list()[0]!.expiresAt).toBe(T0 + 30 * DAY);
    now = T0 + 30 * DAY;
    expect(list.lookup('app@example.test', 'gone@dest.test')).toBeUndefined();
    expect(list.list()).toEqual([]);
    now = T0 + 2 * DAY;
    list.add(bounce({ at: now }));
    ttlDays = 1; // a config reload shortens the ttl of every entry
    now += DAY;
    expect(list.lookup('app@example.test', 'gone@dest.test')).toBeUndefined();
    await list.close();
  });

  it("an entry for a sender domain covers its subdomains, not its parent's other children", async () => {
    const list = await open();
    list.add({ ...bounce(), sender: '', senderDomain: 'example.test', complaint: true, statusCode: '5.7.1', reply: 'complaint (abuse)' });
    expect(list.lookup('news@mail.example.test', 'gone@dest.test')).toMatchObject({ senderDomain: 'example.test' });
    expect(list.lookup('news@example.test', 'gone@dest.test')).toBeDefined();
    expect(list.lookup('news@otherexample.test', 'gone@dest.test')).toBeUndefined();
    list.add(bounce({ sender: 'app@mail.other.test' }));
    expect(list.lookup('app@other.test', 'gone@dest.test')).toBeUndefined();
    await list.close();
  });

  it('keeps an unsubscribe past the ttl and across a compaction, until it is removed; a later bounce does not make it expire', async () => {
    const unsubscribe = { sender: '', senderDomain: 'example.test', unsubscribe: true, recipient: 'Reader@dest.test', statusCode: '5.7.1', reply: 'unsubscribed (one-click) from message Q1', at: T0 };
    const list = await open();
    expect(list.add(unsubscribe)).toBe(true);
    expect(list.add(bounce({ recipient: 'reader@dest.test', at: T0 + DAY }))).toBe(false);
    now = T0 + 365 * DAY;
    expect(describeSuppression(list.lookup('app@example.test', 'reader@dest.test')!)).toBe('suppressed since 2026-11-28T10:00:00Z after the recipient unsubscribed (unsubscribed (one-click) from message Q1)');
    expect(list.list()[0]!.expiresAt).toBeUndefined();
    await list.close();
    const reopened = await open();
    expect(reopened.lookup('app@example.test', 'reader@dest.test')).toMatchObject({ permanent: true });
    expect(await reopened.remove('reader@dest.test')).toHaveLength(1);
    expect(reopened.lookup('app@example.test', 'reader@dest.test')).toBeUndefined();
    await reopened.close();
  });

  it("merges a peer's entries: new or newer ones are taken, an unsubscribe is not replaced by a bounce, an expired one is not taken", async () => {
    const list = await open();
    const peer = { senderDomain: 'Example.test', recipient: 'Gone@dest.test', since: T0, statusCode: '5.1.1', reply: '550 5.1.1 gone' };
    expect(list.merge(peer)).toBe(true);
    expect(list.merge(peer)).toBe(false);
    expect(list.merge({ ...peer, since: T0 + 1000 })).toBe(true);
    expect(list.lookup('app@example.test', 'gone@dest.test')!.since).toBe(T0 + 1000);
    expect(list.merge({ ...peer, recipient: 'left@dest.test', since: T0, permanent: true, reply: 'unsubscribed (one-click)' })).toBe(true);
    expect(list.merge({ ...peer, recipient: 'left@dest.test', since: T0 + DAY })).toBe(false);
    expect(list.merge({ ...peer, recipient: 'old@dest.test', since: T0 - 31 * DAY })).toBe(false);
    // A peer's unsubscribe replaces a bounce listed here, even a newer one: the bounce would expire.
    expect(list.add({ sender: 'app@example.test', recipient: 'both@dest.test', statusCode: '5.2.1', reply: '550 5.2.1 disabled', at: T0 + DAY })).toBe(true);
    expect(list.merge({ ...peer, recipient: 'both@dest.test', since: T0, permanent: true, reply: 'unsubscribed (one-click)' })).toBe(true);
    expect(list.lookup('app@example.test', 'both@dest.test')!.permanent).toBe(true);
    await list.close();
    expect(lines().map((l) => `${String(l.recipient)} ${String(l.permanent ?? '')}`)).toEqual(['gone@dest.test ', 'gone@dest.test ', 'left@dest.test true', 'both@dest.test ', 'both@dest.test true']);
  });

  it('keeps what it listed while the file it makes for it is written (no file yet, as the CLI may find: merge, then remove at once)', async () => {
    const list = await open({ compact: false });
    expect(list.merge({ senderDomain: 'example.test', recipient: 'first@dest.test', since: T0, statusCode: '5.1.1', reply: 'r' })).toBe(true);
    expect(list.add({ sender: 'app@example.test', recipient: 'second@dest.test', statusCode: '5.1.1', reply: 'r', at: T0 })).toBe(true);
    expect((await list.remove('first@dest.test')).map((s) => s.recipient)).toEqual(['first@dest.test']);
    expect(list.lookup('app@example.test', 'second@dest.test')).toBeDefined();
    await list.close();
  });

  it('lists no recipient a DSN could make up: empty, longer than 254 characters, or with spaces or control characters', async () => {
    const list = await open();
    const bounce = { sender: 'app@example.test', statusCode: '5.1.1', reply: '550 5.1.1 unknown', at: T0 };
    for (const recipient of ['', 'no-at-sign', '@dest.test', 'x@', `${'a'.repeat(250)}@dest.test`, 'a b@dest.test', 'a\r\nb@dest.test']) {
      expect(list.add({ ...bounce, recipient }), JSON.stringify(recipient)).toBe(false);
      expect(list.merge({ senderDomain: 'example.test', recipient, since: T0, statusCode: '5.1.1', reply: 'r' }), JSON.stringify(recipient)).toBe(false);
    }
    expect(list.add({ ...bounce, recipient: 'gone@dest.test' })).toBe(true);
    expect(list.list().map((s) => s.recipient)).toEqual(['gone@dest.test']);
    await list.close();
  });

  it('removes an address for one sender domain or for all, and says what it removed', async () => {
    const list = await open();
    list.add(bounce());
    list.add(bounce({ sender: 'app@another.test' }));
    list.add(bounce({ sender: 'app@third.test' }));
    expect(await list.remove('GONE@dest.test', 'another.test')).toMatchObject([{ senderDomain: 'another.test', recipient: 'gone@dest.test' }]);
    expect(list.lookup('app@another.test', 'gone@dest.test')).toBeUndefined();
    expect(list.lookup('app@example.test', 'gone@dest.test')).toBeDefined();
    expect(await list.remove('nobody@dest.test')).toEqual([]);
    expect((await list.remove('gone@dest.test')).map((s) => s.senderDomain).sort()).toEqual(['example.test', 'third.test']);
    expect(list.list()).toEqual([]);
    await list.close();
  });

  it('survives a reopen, and compaction at open keeps only live entries', async () => {
    const first = await open();
    first.add(bounce({ recipient: 'old@dest.test', at: T0 - 29 * DAY }));
    first.add(bounce());
    first.add(bounce({ recipient: 'removed@dest.test' }));
    await first.remove('removed@dest.test');
    await first.close();
    expect(lines()).toHaveLength(4);

    now = T0 + 2 * DAY; // old@ is past 30 days now
    const second = await open();
    expect(second.list().map((s) => s.recipient)).toEqual(['gone@dest.test']);
    expect(second.lookup('app@example.test', 'gone@dest.test')).toMatchObject({ since: T0, reply: '550 5.1.1 <gone@dest.test>: user unknown' });
    await second.close();
    expect(lines()).toEqual([
      { op: 'add', senderDomain: 'example.test', recipient: 'gone@dest.test', at: '2026-11-28T10:00:00.000Z', statusCode: '5.1.1', reply: '550 5.1.1 <gone@dest.test>: user unknown' },
      // A removal is kept for the ttl (so a peer's old entry is not taken back), then dropped.
      { op: 'remove', recipient: 'removed@dest.test', at: '2026-11-28T10:00:00.000Z' },
    ]);
    now = T0 + 31 * DAY;
    await (await open()).close();
    expect(lines()).toEqual([]);
  });

  it("keeps a removal: a peer's entry listed before it is not taken back, a later one is, and the fleet is told of removals made here or by the CLI, once", async () => {
    const removed: unknown[] = [];
    const list = await open({ onRemoved: (r: unknown) => removed.push(r) });
    list.add(bounce());
    list.add(bounce({ sender: 'app@other.test' }));
    now = T0 + DAY;
    expect(await list.remove('gone@dest.test', 'example.test')).toHaveLength(1);
    expect(removed).toEqual([{ senderDomain: 'example.test', recipient: 'gone@dest.test', at: T0 + DAY }]);
    // A peer that missed the removal still shares the entry: not taken back.
    const peerEntry = { senderDomain: 'example.test', recipient: 'gone@dest.test', since: T0, statusCode: '5.1.1', reply: '550 5.1.1 old' };
    expect(list.merge(peerEntry)).toBe(false);
    expect(list.lookup('app@example.test', 'gone@dest.test')).toBeUndefined();
    // A bounce after the removal is listed again.
    expect(list.merge({ ...peerEntry, since: T0 + 2 * DAY, reply: '550 5.1.1 again' })).toBe(true);
    expect(list.lookup('app@example.test', 'gone@dest.test')).toMatchObject({ reply: '550 5.1.1 again' });

    // A peer's removal for every sender domain: drops what was listed before it, once.
    now = T0 + 3 * DAY;
    expect(list.mergeRemoval({ recipient: 'GONE@dest.test', at: T0 + 1.5 * DAY })).toBe(true);
    expect(list.mergeRemoval({ recipient: 'gone@dest.test', at: T0 + 1.5 * DAY })).toBe(false);
    expect(list.lookup('app@other.test', 'gone@dest.test')).toBeUndefined();
    expect(list.lookup('app@example.test', 'gone@dest.test')).toMatchObject({ reply: '550 5.1.1 again' });
    expect(list.listRemovals()).toEqual([
      { senderDomain: 'example.test', recipient: 'gone@dest.test', at: T0 + DAY },
      { recipient: 'gone@dest.test', at: T0 + 1.5 * DAY },
    ]);
    // A removal older than the ttl is not taken.
    expect(list.mergeRemoval({ recipient: 'x@dest.test', at: T0 - 31 * DAY })).toBe(false);

    // The CLI's removal (another writer) is told when the relay reads it; merged and own ones are not told again.
    list.add(bounce({ recipient: 'cli@dest.test', at: now }));
    await vi.waitFor(() => expect(fs.readFileSync(file(), 'utf8')).toContain('cli@dest.test'));
    const cli = await SuppressionList.open(dir, opts());
    now = T0 + 4 * DAY;
    expect(await cli.remove('cli@dest.test')).toHaveLength(1);
    await list.refresh();
    expect(list.lookup('app@example.test', 'cli@dest.test')).toBeUndefined();
    expect(removed).toEqual([
      { senderDomain: 'example.test', recipient: 'gone@dest.test', at: T0 + DAY },
      { senderDomain: undefined, recipient: 'cli@dest.test', at: T0 + 4 * DAY },
    ]);
    await list.close();
  });

  it('picks up lines another writer appended (the CLI beside a running relay)', async () => {
    const relay = await open();
    relay.add(bounce());
    await relay.close();
    const reader = await open();
    const cli = await SuppressionList.open(dir, opts());
    expect(await cli.remove('gone@dest.test', 'example.test')).toHaveLength(1);
    expect(reader.lookup('app@example.test', 'gone@dest.test')).toBeDefined(); // not read yet
    await reader.refresh();
    expect(reader.lookup('app@example.test', 'gone@dest.test')).toBeUndefined();
    // And an addition by another writer, appended by hand.
    fs.appendFileSync(file(), JSON.stringify({ op: 'add', senderDomain: 'example.test', recipient: 'x@dest.test', at: new Date(T0).toISOString(), statusCode: '5.2.1', reply: '550 5.2.1 disabled' }) + '\n');
    await reader.refresh();
    expect(reader.lookup('app@example.test', 'x@dest.test')).toMatchObject({ statusCode: '5.2.1' });
    await reader.close();
  });

  it('polls the file while watching', async () => {
    const relay = await open();
    relay.watch(20);
    relay.add(bounce());
    const cli = await SuppressionList.open(dir, opts());
    await cli.remove('gone@dest.test');
    const until = Date.now() + 2000;
    while (relay.lookup('app@example.test', 'gone@dest.test') && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(relay.lookup('app@example.test', 'gone@dest.test')).toBeUndefined();
    await relay.close();
  });

  it('applies only whole lines, skips a torn line, and ends it before appending', async () => {
    const list = await open();
    list.add(bounce());
    await list.close();
    // A line cut short (a full disk) followed by half of a line still being written.
    fs.appendFileSync(file(), '{"op":"add","senderDomain":"exa');
    const reader = await SuppressionList.open(dir, opts());
    expect(reader.list()).toHaveLength(1);
    expect(reader.skipped).toBe(0); // the unfinished line is left for later
    reader.add(bounce({ recipient: 'next@dest.test' }));
    await reader.close();
    expect(fs.readFileSync(file(), 'utf8')).toMatch(/"senderDomain":"exa\n\{"op":"add".*"next@dest\.test"/);
    const again = await open();
    expect(again.skipped).toBe(1);
    expect(again.list().map((s) => s.recipient)).toEqual(['gone@dest.test', 'next@dest.test']);
    await again.close();
    expect(lines()).toHaveLength(2);
  });

  it('starts over when the file is replaced (compacted by a restarted relay) or deleted', async () => {
    const writer = await open();
    writer.add(bounce());
    await writer.close();
    const reader = await SuppressionList.open(dir, opts());
    expect(reader.list()).toHaveLength(1);
    // A new file, longer than what the reader has read, with other entries.
    const add = (recipient: string) => JSON.stringify({ op: 'add', senderDomain: 'example.test', recipient, at: new Date(T0).toISOString(), statusCode: '5.1.1', reply: '550 5.1.1 unknown' }) + '\n';
    fs.writeFileSync(`${file()}.new`, add('first-of-many@dest.test') + add('second-of-many@dest.test'));
    fs.renameSync(`${file()}.new`, file());
    await reader.refresh();
    expect(reader.list().map((s) => s.recipient)).toEqual(['first-of-many@dest.test', 'second-of-many@dest.test']);
    expect(reader.skipped).toBe(0);
    fs.rmSync(file());
    await reader.refresh();
    expect(reader.list()).toEqual([]);
    await reader.close();
  });

  it('describes an entry for a reply: since when, and the bounce, on one line', () => {
    expect(describeSuppression({ senderDomain: 'example.test', recipient: 'gone@dest.test', since: T0, statusCode: '5.1.1', reply: '550 5.1.1 <gone@dest.test>: user unknown' })).toBe(
      'suppressed since 2026-11-28T10:00:00Z after a hard bounce (550 5.1.1 <gone@dest.test>: user unknown)',
    );
  });

  it('keeps a long or multi-line reply short', async () => {
    const list = await open();
    list.add(bounce({ reply: `550-5.1.1 first\r\n550 5.1.1 ${'x'.repeat(500)}` }));
    const s = list.lookup('app@example.test', 'gone@dest.test')!;
    expect(s.reply).not.toMatch(/[\r\n]/);
    expect(s.reply.length).toBeLessThanOrEqual(160);
    await list.close();
  });
});
