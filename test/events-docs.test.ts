/**
 * docs/events.md kept true by the code it describes:
 *
 * - the signature recipes (the Python 3 and the Node.js fenced blocks, run as written with
 *   `python3` and `node`) accept a batch signed by relay/events/signature.ts and refuse a changed
 *   body, an old timestamp and a key they do not know; with two keys in the header (rotation)
 *   the receiver's one key suffices;
 * - the example of each event type is what relay/events/event.ts makes from the inputs below
 *   (field for field, as JSON on the wire), and the batch example has the schema's version;
 * - the bounce table is bounceOf's: every listed code gets the row's type and category, every
 *   hard-bounce code is listed, and the table has every category the relay makes.
 *
 * The recipes run only where python3 exists: missing, the Python suite fails in CI and skips
 * loudly elsewhere (test/peers/availability.ts), as every real-peer test does.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arrivalEvents, attemptEvent, bounceOf, EVENT_SCHEMA_VERSION, EVENT_TYPES, noticeEvents, reportEvent, trackingEvent, unsubscribeEvent, type EventType, type RelayEvent } from '../relay/events/event.js';
import { signatureHeader, verifySignature } from '../relay/events/signature.js';
import { isHardBounce } from '../relay/suppression.js';
import { describePeer, findBinary } from './peers/availability.js';

const root = path.resolve(import.meta.dirname, '..');
const DOC_FILE = path.join(root, 'docs/events.md');
const doc = fs.readFileSync(DOC_FILE, 'utf8');

/** The fenced block of `lang` right after the marker `<!-- name -->` (nothing but blank lines between). */
function blockAfter(name: string, lang: string): string {
  const marker = `<!-- ${name} -->`;
  const at = doc.indexOf(marker);
  if (at < 0) throw new Error(`docs/events.md has no ${marker}`);
  const m = new RegExp('^\\s*```' + lang + '\\n([\\s\\S]*?)\\n```').exec(doc.slice(at + marker.length));
  if (!m) throw new Error(`docs/events.md: no \`\`\`${lang} block right after ${marker}`);
  return m[1]!;
}

// ---------------------------------------------------------------------------------------
// The examples: what the relay makes from one made-up message's life
// ---------------------------------------------------------------------------------------

const T0 = Date.UTC(2026, 11, 6, 12, 0, 0);
const QUEUE_ID = 'MIUF8W009F3A1C00001';
const ctx = (seconds: number) => ({ relay: 'outbound.mail.svc', pod: 'outbound-7d9f8b6c5-x2k4q', senderDomains: ['example.com'], now: T0 + seconds * 1000 });
const message = { id: QUEUE_ID, sender: 'billing@mail.example.com', messageId: '<invoice-4711@mail.example.com>', tags: ['invoice', 'eu'], metadata: { customer: '4711', invoice: 'R-2026-0815' } };
const to = (address: string, extra: Record<string, string> = {}) => ({ ...message, recipients: [{ address, status: 'pending' as const, ...extra }] });

function examples(): Record<EventType, RelayEvent> {
  const suppressedReply = 'suppressed since 2026-11-28T10:00:00Z after a hard bounce (550 5.1.1 <old@example.org>: Recipient address rejected: User unknown)';
  return {
    received: arrivalEvents(to('ada@example.net'), ctx(0))[0]!,
    deferred: attemptEvent(to('ada@example.net'), ctx(2), { address: 'ada@example.net', result: 'deferred', expired: false, reply: '451 4.7.1 Greylisted, please try again later', statusCode: '4.7.1', remoteMta: 'mx1.example.net', retryAt: T0 + 302_000 }, 1),
    delivered: attemptEvent(to('ada@example.net'), ctx(305), { address: 'ada@example.net', result: 'delivered', expired: false, reply: '250 2.0.0 Ok: queued as 4QxK2m1Zq3z9', statusCode: '2.0.0', remoteMta: 'mx1.example.net' }, 2),
    bounced: attemptEvent(to('bob@example.org'), ctx(3), { address: 'bob@example.org', result: 'bounced', expired: false, reply: '550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown', statusCode: '5.1.1', remoteMta: 'mx.example.org' }, 1),
    expired: attemptEvent(
      to('carol@example.io'),
      ctx(432_000),
      { address: 'carol@example.io', result: 'bounced', expired: true, reply: 'message expired after 120 h in the queue; last reply: 421 4.4.2 mx.example.io: connection timed out', statusCode: '4.4.7', remoteMta: 'mx.example.io' },
      31,
    ),
    suppressed: arrivalEvents(to('old@example.org', { status: 'failed', statusCode: '5.1.1', lastReply: suppressedReply }) as never, ctx(0))[1]!,
    handed_over: arrivalEvents({ ...to('dave@example.net'), handedOverFrom: 'MIUF7Q00C4D2E900017' }, ctx(60))[0]!,
    notice_sent: noticeEvents(to('bob@example.org'), ctx(4), { queueId: 'MIUF8W049F3A1C00002', action: 'failed' }, ['bob@example.org'])[0]!,
    complained: reportEvent({ queueId: QUEUE_ID, senderDomain: 'example.com', messageId: message.messageId }, ctx(86_400), { type: 'complained', recipient: 'erin@example.net', report: { kind: 'complaint', feedbackType: 'abuse', userAgent: 'Yahoo!-Mail-Feedback/2.0' } }),
    unsubscribed: unsubscribeEvent({ queueId: QUEUE_ID, senderDomain: 'example.com', recipient: 'frank@example.net' }, ctx(7200), 'one_click'),
    opened: trackingEvent({ queueId: QUEUE_ID, senderDomain: 'example.com', recipient: 'ada@example.net' }, ctx(3600), 'opened', { userAgent: SAFARI }, '3f9a1c2b7d4e'),
    clicked: trackingEvent({ queueId: QUEUE_ID, senderDomain: 'example.com', recipient: 'ada@example.net', url: 'https://shop.example.com/invoices/R-2026-0815' }, ctx(3642), 'clicked', { userAgent: CHROME }, '8c0e55d1a9f2'),
  };
}
const SAFARI = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)';
const CHROME = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
/** Events the examples do not show (a person's open and click are), whose fields the reference names too: flagged fetches. */
const flagged = (): RelayEvent[] => [
  trackingEvent({ queueId: QUEUE_ID, senderDomain: 'example.com', recipient: 'ada@example.net' }, ctx(60), 'opened', { userAgent: 'Mozilla/5.0', proxy: 'apple' }, '000000000000'),
  trackingEvent({ queueId: QUEUE_ID, senderDomain: 'example.com', recipient: 'ada@example.net', url: 'https://shop.example.com/' }, ctx(61), 'clicked', { scanner: true }, '000000000001'),
];

/** As the receiver gets it: JSON leaves out what is undefined. */
const wire = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

describe('docs/events.md: the examples are what relay/events/event.ts makes', () => {
  const made = examples();

  it.each([...EVENT_TYPES])('%s', (type) => {
    const text = blockAfter(`example: ${type}`, 'json');
    const shown = JSON.parse(text) as unknown;
    expect(shown, `the ${type} example in docs/events.md; the code makes:\n${JSON.stringify(wire(made[type]), null, 2)}\n`).toEqual(wire(made[type]));
  });

  it('the batch example is a batch of this schema version, of events like those above', () => {
    const batch = JSON.parse(blockAfter('example: batch', 'json')) as { version: number; events: RelayEvent[] };
    expect(Object.keys(batch)).toEqual(['version', 'events']);
    expect(batch.version).toBe(EVENT_SCHEMA_VERSION);
    expect(batch.events.length).toBeGreaterThan(1);
    for (const e of batch.events) expect(e).toEqual(wire(made[e.type]));
  });

  it('the field reference names every field an example has, and no other', () => {
    const table = doc.slice(doc.indexOf('<!-- field-reference -->'));
    const named = new Set([...table.slice(0, table.indexOf('\n\n', table.indexOf('|'))).matchAll(/^\| `([\w.]+)`/gm)].map((m) => m[1]!));
    const fields = new Set<string>();
    const walk = (o: Record<string, unknown>, prefix: string) => {
      for (const [k, v] of Object.entries(o)) {
        fields.add(prefix + k);
        if (v && typeof v === 'object' && !Array.isArray(v) && k !== 'metadata') walk(v as Record<string, unknown>, `${prefix}${k}.`);
      }
    };
    for (const e of [...Object.values(wire(made)), ...wire(flagged())]) walk(e as unknown as Record<string, unknown>, '');
    expect([...named].sort()).toEqual([...fields].sort());
  });
});

// ---------------------------------------------------------------------------------------
// The bounce table
// ---------------------------------------------------------------------------------------

describe("docs/events.md: the bounce table is bounceOf's", () => {
  const at = doc.indexOf('<!-- bounce-table -->');
  const rows = doc
    .slice(at, doc.indexOf('\n\n', doc.indexOf('|', at)))
    .split('\n')
    .filter((l) => l.startsWith('|'))
    .slice(2)
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
  const unquote = (s: string) => s.replace(/`/g, '');
  // Every enhanced code an MTA may send, for the sweeps below.
  const sweep = ['4', '5'].flatMap((c) => Array.from({ length: 8 }, (_, s) => Array.from({ length: 31 }, (_, d) => `${c}.${s}.${d}`)).flat());

  it('is there, with a row per category', () => {
    expect(at).toBeGreaterThan(0);
    const categories = new Set([...sweep.map((c) => bounceOf(c, false).category), bounceOf(undefined, false).category, bounceOf('5.1.1', true).category, 'suppressed']);
    expect(new Set(rows.map((r) => unquote(r[2]!)))).toEqual(categories);
  });

  it("gives each code it lists the row's type and category", () => {
    const problems: string[] = [];
    for (const [codes, type, category] of rows) {
      const listed = [...codes!.matchAll(/`(\d\.\d{1,3}\.\d{1,3})`/g)].map((m) => m[1]!);
      const want = { type: unquote(type!), category: unquote(category!) };
      if (want.category === 'expired') {
        for (const c of ['4.4.7', '5.1.1', undefined]) if (JSON.stringify(bounceOf(c, true)) !== JSON.stringify(want)) problems.push(`expired ${c}: ${JSON.stringify(bounceOf(c, true))}`);
        continue;
      }
      if (want.category === 'suppressed') {
        const e = arrivalEvents(to('x@example.org', { status: 'failed', statusCode: '5.1.1', lastReply: 'suppressed' }) as never, ctx(0))[1]!;
        if (JSON.stringify(e.bounce) !== JSON.stringify(want)) problems.push(`suppressed: ${JSON.stringify(e.bounce)}`);
        continue;
      }
      if (!listed.length) problems.push(`row ${category} lists no code in backticks`);
      if (/no code/.test(codes!) && JSON.stringify(bounceOf(undefined, false)) !== JSON.stringify(want)) problems.push(`no code: ${JSON.stringify(bounceOf(undefined, false))}`);
      for (const c of listed) if (JSON.stringify(bounceOf(c, false)) !== JSON.stringify(want)) problems.push(`${c}: the table says ${JSON.stringify(want)}, bounceOf ${JSON.stringify(bounceOf(c, false))}`);
    }
    expect(problems).toEqual([]);
  });

  it('lists every code that puts an address on the suppression list (the permanent ones)', () => {
    const listed = new Set(rows.flatMap(([codes]) => [...codes!.matchAll(/`(\d\.\d{1,3}\.\d{1,3})`/g)].map((m) => m[1]!)));
    expect(sweep.filter((c) => isHardBounce(c) && !listed.has(c))).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------
// The signature recipes, run as the doc gives them
// ---------------------------------------------------------------------------------------

const OLD_KEY = 'old-key-0123456789abcdefghijklmnopqrstuvwxyz';
const NEW_KEY = 'new-key-ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210';

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

type Verifier = (header: string, body: Buffer, keys: Record<string, string>, now?: number) => Promise<string>;

/** The cases every recipe must pass, on a real batch signed by the relay's own code. */
function recipeCases(verify: () => Verifier): void {
  const batch = Buffer.from(JSON.stringify({ version: EVENT_SCHEMA_VERSION, events: [wire(examples().bounced), { ...wire(examples().delivered), metadata: { customer: 'Müller & Søn' } }] }));
  const t = Math.floor(Date.now() / 1000);
  const rotating = [
    { id: 'k2026-06', secret: OLD_KEY },
    { id: 'k2026-12', secret: NEW_KEY },
  ];

  it('takes a batch signed by the relay now, with the one key the receiver knows (the relay signs with two: rotation)', async () => {
    const header = signatureHeader(batch, t, rotating);
    expect(verifySignature(header, batch, [{ id: 'k2026-12', secret: NEW_KEY }], t)).toEqual({ ok: true, keyId: 'k2026-12' });
    expect(await verify()(header, batch, { 'k2026-12': NEW_KEY })).toBe('k2026-12');
    expect(await verify()(header, batch, { 'k2026-06': OLD_KEY })).toBe('k2026-06');
  });

  it('refuses a changed body, a timestamp out of tolerance, an unknown key and a missing header', async () => {
    const header = signatureHeader(batch, t, rotating);
    const changed = Buffer.from(batch.toString('utf8').replace('"bounced"', '"delivered"'));
    expect(changed.equals(batch)).toBe(false);
    expect(await verify()(header, changed, { 'k2026-12': NEW_KEY })).toBe('REFUSED');
    expect(await verify()(header, batch, { 'k2026-12': OLD_KEY })).toBe('REFUSED');
    expect(await verify()(header, batch, { 'k2027-06': NEW_KEY })).toBe('REFUSED');
    expect(await verify()('', batch, { 'k2026-12': NEW_KEY })).toBe('REFUSED');
    // Five minutes either way: just inside, just outside.
    expect(await verify()(header, batch, { 'k2026-12': NEW_KEY }, t + 299)).toBe('k2026-12');
    expect(await verify()(header, batch, { 'k2026-12': NEW_KEY }, t + 301)).toBe('REFUSED');
    expect(await verify()(header, batch, { 'k2026-12': NEW_KEY }, t - 301)).toBe('REFUSED');
  });
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-events-docs-'));
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs a recipe through a driver: argv header, body file, keys JSON, now ('' for the clock); prints the key id or REFUSED. */
function driven(interpreter: () => string, script: () => string): Verifier {
  let n = 0;
  return async (header, body, keys, now) => {
    const bodyFile = path.join(dir, `body-${n++}`);
    fs.writeFileSync(bodyFile, body);
    const r = await run(interpreter(), [script(), header, bodyFile, JSON.stringify(keys), now === undefined ? '' : String(now)]);
    if (r.code !== 0) throw new Error(`the recipe exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
}

describe('docs/events.md: the Node.js recipe, run with node', () => {
  let script = '';
  beforeAll(() => {
    fs.writeFileSync(path.join(dir, 'recipe.mjs'), blockAfter('recipe: node', 'js'));
    script = path.join(dir, 'driver.mjs');
    fs.writeFileSync(
      script,
      [
        "import fs from 'node:fs';",
        "import { verifyMailfleetSignature } from './recipe.mjs';",
        'const [header, bodyFile, keys, now] = process.argv.slice(2);',
        "const keyId = verifyMailfleetSignature(header, fs.readFileSync(bodyFile), JSON.parse(keys), ...(now === '' ? [] : [Number(now)]));",
        "process.stdout.write(keyId ?? 'REFUSED');",
      ].join('\n'),
    );
  });
  recipeCases(() => driven(() => process.execPath, () => script));
});

describePeer('python3', ['python3'], () => {
  describe('docs/events.md: the Python 3 recipe, run with python3', () => {
    let script = '';
    beforeAll(() => {
      script = path.join(dir, 'recipe.py');
      fs.writeFileSync(
        script,
        [
          blockAfter('recipe: python', 'python'),
          '',
          '',
          'import json',
          'import sys',
          '',
          'header, body_file, keys, now = sys.argv[1:5]',
          "with open(body_file, 'rb') as f:",
          '    body = f.read()',
          "key_id = verify_mailfleet_signature(header, body, json.loads(keys), *([] if now == '' else [float(now)]))",
          "sys.stdout.write(key_id or 'REFUSED')",
          '',
        ].join('\n'),
      );
    });
    recipeCases(() => driven(() => findBinary('python3')!, () => script));
  });
});
