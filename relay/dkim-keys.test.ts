import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dkimPublicKeyFromPem, generateDkimKey, loadDkimKey } from './dkim-keys.js';
import { ErrorCodes, MailfleetError } from './errors.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailfleet-dkim-keys-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function writeKey(name: string, pem: string | Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, pem);
  return file;
}

function thrown(fn: () => unknown): MailfleetError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MailfleetError);
    return err as MailfleetError;
  }
  throw new Error('expected a MailfleetError');
}

/** The key a receiver rebuilds from the DKIM record's p= tag. */
function receiverKey(algorithm: string, p: string): KeyObject {
  if (algorithm === 'ed25519-sha256') return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(p, 'base64').toString('base64url') }, format: 'jwk' });
  return createPublicKey({ key: Buffer.from(p, 'base64'), format: 'der', type: 'spki' });
}

/** Whether a signature by the private key verifies with the key published in p=. */
function publishedKeyVerifies(privateKeyPem: string, algorithm: string, p: string): boolean {
  const data = Buffer.from('DKIM-Signature: test');
  const hash = algorithm === 'ed25519-sha256' ? null : 'sha256';
  return verify(hash, data, receiverKey(algorithm, p), sign(hash, data, createPrivateKey(privateKeyPem)));
}

describe('loadDkimKey', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

  it('reads a PKCS#8 RSA key: p= is the SubjectPublicKeyInfo that verifies its signatures', () => {
    const file = writeKey('rsa-pkcs8.pem', rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const key = loadDkimKey(file, 'mf1');
    expect(key).toMatchObject({ selector: 'mf1', algorithm: 'rsa-sha256', file });
    expect(key.publicKey).toBe(rsa.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'));
    expect(publishedKeyVerifies(key.privateKeyPem, key.algorithm, key.publicKey)).toBe(true);
  });

  it('reads a PKCS#1 RSA key (BEGIN RSA PRIVATE KEY) and hands it on as PKCS#8', () => {
    const pem = rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
    expect(pem).toContain('BEGIN RSA PRIVATE KEY');
    const key = loadDkimKey(writeKey('rsa-pkcs1.pem', pem), 'mf1');
    expect(key.publicKey).toBe(rsa.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'));
    expect(key.privateKeyPem).toContain('BEGIN PRIVATE KEY');
  });

  it('reads an Ed25519 key: p= is the raw 32-byte key in 44 base64 characters, not the SPKI (RFC 8463)', () => {
    const ed = generateKeyPairSync('ed25519');
    const key = loadDkimKey(writeKey('ed.pem', ed.privateKey.export({ type: 'pkcs8', format: 'pem' })), 'ed1');
    expect(key.algorithm).toBe('ed25519-sha256');
    expect(key.publicKey).toHaveLength(44);
    const spki = ed.publicKey.export({ type: 'spki', format: 'der' });
    expect(Buffer.from(key.publicKey, 'base64')).toEqual(spki.subarray(spki.length - 32));
    expect(publishedKeyVerifies(key.privateKeyPem, key.algorithm, key.publicKey)).toBe(true);
  });

  it('refuses an RSA key under 2048 bits, naming the file and the size', () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' });
    const file = writeKey('weak.pem', weak);
    const err = thrown(() => loadDkimKey(file, 'old'));
    expect(err.code).toBe(ErrorCodes.DKIM_KEY_INVALID);
    expect(err.message).toBe(`DKIM key file ${file} (selector old) is a 1024-bit RSA key; DKIM needs at least 2048 bits`);
    expect(err.hint).toMatch(/openssl genpkey/);
  });

  it('refuses other key types (EC), naming the file and the algorithms DKIM uses', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' });
    const file = writeKey('ec.pem', ec);
    const err = thrown(() => loadDkimKey(file, 'ec1'));
    expect(err.message).toContain(file);
    expect(err.message).toMatch(/is a ec key; DKIM signs with RSA .* or Ed25519/);
  });

  it('refuses a missing file, a file without a private key and an encrypted key, naming the file', () => {
    const missing = path.join(dir, 'no-such.pem');
    const unreadable = thrown(() => loadDkimKey(missing, 's'));
    expect(unreadable.code).toBe(ErrorCodes.DKIM_KEY_UNREADABLE);
    expect(unreadable.message).toMatch(new RegExp(`^cannot read DKIM key file ${missing} \\(selector s\\): ENOENT`));
    expect(unreadable.hint).toMatch(/privateKeyFile/);

    const certificateLike = writeKey('public.pem', rsa.publicKey.export({ type: 'spki', format: 'pem' }));
    const notPrivate = thrown(() => loadDkimKey(certificateLike, 's'));
    expect(notPrivate.message).toContain(`DKIM key file ${certificateLike} (selector s) holds no PEM private key`);
    expect(notPrivate.hint).toContain('BEGIN PRIVATE KEY');

    for (const type of ['pkcs8', 'pkcs1'] as const) {
      const encrypted = writeKey(`encrypted-${type}.pem`, rsa.privateKey.export({ type, format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }));
      const locked = thrown(() => loadDkimKey(encrypted, 's'));
      expect(locked.message).toBe(`DKIM key file ${encrypted} (selector s) is encrypted with a passphrase`);
      expect(locked.hint).toMatch(/openssl pkey/);
    }
  });
});

describe('generateDkimKey and dkimPublicKeyFromPem', () => {
  it.each(['rsa-sha256', 'ed25519-sha256'] as const)('generates a %s key whose p= verifies its signatures', (algorithm) => {
    const key = generateDkimKey(algorithm);
    expect(publishedKeyVerifies(key.privateKeyPem, algorithm, key.publicKey)).toBe(true);
    expect(dkimPublicKeyFromPem(key.privateKeyPem)).toEqual({ algorithm, publicKey: key.publicKey });
  });

  it('generates RSA keys of 2048 bits', () => {
    expect(createPrivateKey(generateDkimKey('rsa-sha256').privateKeyPem).asymmetricKeyDetails?.modulusLength).toBe(2048);
  });

  it('names the source it is given in errors (a Secret for the operator)', () => {
    expect(() => dkimPublicKeyFromPem('not a key', 'Secret mail/dkim-example key tls.key')).toThrow(/^Secret mail\/dkim-example key tls.key holds no PEM private key/);
  });
});
