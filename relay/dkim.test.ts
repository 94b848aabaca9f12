import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { dkimVerify } from 'mailauth';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from './config.js';
import { generateDkimKey } from './dkim-keys.js';
import { DkimSigner } from './dkim.js';
import { MailfleetError } from './errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mf-dkim-'));
const txt = new Map<string, string>();

function keyFile(name: string, algorithm: 'rsa-sha256' | 'ed25519-sha256', selector: string, domain: string): string {
  const key = generateDkimKey(algorithm);
  const file = path.join(dir, name);
  fs.writeFileSync(file, key.privateKeyPem);
  txt.set(`${selector}._domainkey.${domain}`, `v=DKIM1; k=${algorithm === 'rsa-sha256' ? 'rsa' : 'ed25519'}; p=${key.publicKey}`);
  return file;
}

function signerFor(senderDomains: unknown[]): DkimSigner {
  const config = parseConfig({ spool: { dir: 'spool' }, listeners: [{ name: 'dev', port: 0, tls: 'none', auth: 'none' }], delivery: { route: { type: 'file', dir: 'out' } }, senderDomains }, dir);
  return DkimSigner.fromConfig(config.senderDomains);
}

const resolver = async (name: string, type: string) => {
  const value = type === 'TXT' ? txt.get(name) : undefined;
  if (!value) throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
  return [[value]];
};

const message = (from: string) =>
  Buffer.from(
    [`Received: from app by relay.test; Sat, 28 Nov 2026 10:00:00 +0000`, `From: App <${from}>`, 'To: someone@elsewhere.test', 'Subject: invoice 42', 'Date: Sat, 28 Nov 2026 10:00:00 +0000', 'Message-ID: <1@app.test>', '', 'Hello,', 'your invoice.', ''].join('\r\n'),
  );

async function signed(signer: DkimSigner, raw: Buffer): Promise<Buffer> {
  const headerLength = raw.indexOf('\r\n\r\n') + 4;
  const result = await signer.sign(Readable.from([raw.subarray(0, 7), raw.subarray(7)]), headerLength);
  return Buffer.concat([Buffer.from(result?.headers ?? ''), raw]);
}

async function verdicts(raw: Buffer): Promise<string[]> {
  const { results } = await dkimVerify(raw, { resolver });
  // mailauth 4.13 returns `algo`, though its typings say `algorithm`.
  return results.map((r) => `${r.signingDomain}/${r.selector}/${(r as unknown as { algo: string }).algo}:${r.status.result}`);
}

describe('DKIM signing', () => {
  let signer: DkimSigner;
  beforeAll(() => {
    signer = signerFor([
      { domain: 'example.test', dkim: { keys: [{ selector: 'rsa1', privateKeyFile: keyFile('rsa1.key', 'rsa-sha256', 'rsa1', 'example.test') }, { selector: 'ed1', privateKeyFile: keyFile('ed1.key', 'ed25519-sha256', 'ed1', 'example.test') }, { selector: 'old', active: false, privateKeyFile: keyFile('old.key', 'rsa-sha256', 'old', 'example.test') }] } },
      { domain: 'mail.example.test', dkim: { keys: [{ selector: 'sub', privateKeyFile: keyFile('sub.key', 'ed25519-sha256', 'sub', 'mail.example.test') }] } },
      { domain: 'nokeys.test' },
    ]);
  });

  it('signs with each active key, both algorithms, and mailauth verifies both', async () => {
    const raw = await signed(signer, message('app@example.test'));
    expect(await verdicts(raw)).toEqual(['example.test/rsa1/rsa-sha256:pass', 'example.test/ed1/ed25519-sha256:pass']);
    const header = raw.toString().split('\r\n\r\n')[0]!;
    expect(header).toMatch(/c=relaxed\/relaxed/);
    expect(header).not.toMatch(/s=old/);
  });

  it('over-signs From: a second From added after signing fails verification', async () => {
    const raw = await signed(signer, message('app@example.test'));
    const h = raw.toString().split('\r\n\r\n')[0]!.replace(/\r\n\s+/g, ' ');
    expect(h).toMatch(/h=[^;]*From[^;]*:\s*From/i);
    // Added at the top, above the signed From: without over-signing a verifier would read the
    // bottom-most From, still pass, and a mail client might show the forged one.
    const forged = Buffer.concat([Buffer.from('From: ceo@example.test\r\n'), raw]);
    expect((await verdicts(forged)).map((v) => v.split(':')[1])).toEqual(['fail', 'fail']);
  });

  it('a message changed after signing fails', async () => {
    const raw = await signed(signer, message('app@example.test'));
    const changed = Buffer.from(raw.toString().replace('your invoice.', 'your lnvoice.'));
    // mailauth calls a body hash mismatch "neutral" and a header change "fail": neither passes.
    expect((await verdicts(changed)).map((v) => v.split(':')[1])).toEqual(['neutral', 'neutral']);
    const subject = Buffer.from(raw.toString().replace('Subject: invoice 42', 'Subject: invoice 43'));
    expect((await verdicts(subject)).map((v) => v.split(':')[1])).toEqual(['fail', 'fail']);
  });

  it('a subdomain with its own keys uses them; a subdomain without uses its parent', async () => {
    expect(await verdicts(await signed(signer, message('app@mail.example.test')))).toEqual(['mail.example.test/sub/ed25519-sha256:pass']);
    expect(await verdicts(await signed(signer, message('app@eu.example.test')))).toEqual(['example.test/rsa1/rsa-sha256:pass', 'example.test/ed1/ed25519-sha256:pass']);
  });

  it('does not sign mail from other domains, or from a sender domain without keys', async () => {
    const raw = message('app@elsewhere.test');
    expect(await signer.sign(Readable.from([raw]), raw.indexOf('\r\n\r\n') + 4)).toBeUndefined();
    const nokeys = message('app@nokeys.test');
    expect(await signer.sign(Readable.from([nokeys]), nokeys.indexOf('\r\n\r\n') + 4)).toBeUndefined();
  });

  it('a key file that cannot be read or parsed stops the start with its name', () => {
    fs.writeFileSync(path.join(dir, 'bad.key'), 'not a key');
    for (const file of ['missing.key', 'bad.key']) {
      let err: unknown;
      try {
        signerFor([{ domain: 'x.test', dkim: { keys: [{ selector: 's', privateKeyFile: file }] } }]);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(MailfleetError);
      expect((err as Error).message).toContain(path.join(dir, file));
    }
  });

  it('refuses two active keys of one algorithm', () => {
    const a = keyFile('a.key', 'ed25519-sha256', 'a', 'two.test');
    const b = keyFile('b.key', 'ed25519-sha256', 'b', 'two.test');
    expect(() => signerFor([{ domain: 'two.test', dkim: { keys: [{ selector: 'a', privateKeyFile: a }, { selector: 'b', privateKeyFile: b }] } }])).toThrow(/two active ed25519-sha256 keys/);
  });
});
