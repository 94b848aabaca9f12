/**
 * DKIM signing keys: reading and checking a PEM private key, and the public key that goes in the
 * DKIM record's `p=` tag. Shared by the relay (signing, `mailfleet records`) and the operator
 * (keys from Secrets), so it does no I/O beyond reading the one file `loadDkimKey` is given.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import type { SenderDomainConfig } from './config.js';
import { ErrorCodes, MailfleetError } from './errors.js';

export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

/** Smaller RSA keys are weak, and receivers such as Gmail treat them as no signature. */
export const MIN_RSA_BITS = 2048;

export interface DkimPublicKey {
  algorithm: DkimAlgorithm;
  /** Base64 for the DKIM record's `p=` tag. */
  publicKey: string;
}

export interface DkimKey extends DkimPublicKey {
  selector: string;
  /** The key as PKCS#8 PEM, whatever form the file had. */
  privateKeyPem: string;
  file: string;
}

const GENERATE_HINT = 'make one with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` or `openssl genpkey -algorithm ed25519`';

/** Reads and checks the private key of a DKIM selector; errors name the file. */
export function loadDkimKey(file: string, selector: string): DkimKey {
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new MailfleetError(
      ErrorCodes.DKIM_KEY_UNREADABLE,
      `cannot read DKIM key file ${file} (selector ${selector}): ${(err as Error).message}`,
      'mount the DKIM key Secret, or fix privateKeyFile',
    );
  }
  const key = parsePrivateKey(pem, `DKIM key file ${file} (selector ${selector})`);
  return { selector, file, ...publicKeyOf(key), privateKeyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/**
 * The algorithm and `p=` value of a PEM private key (the operator has the PEM from a Secret).
 * `source` names the key in errors.
 */
export function dkimPublicKeyFromPem(pem: string, source = 'DKIM key'): DkimPublicKey {
  return publicKeyOf(parsePrivateKey(pem, source));
}

/** A new key pair: RSA of MIN_RSA_BITS or Ed25519. */
export function generateDkimKey(algorithm: DkimAlgorithm): { privateKeyPem: string; publicKey: string } {
  const { privateKey } = algorithm === 'rsa-sha256' ? generateKeyPairSync('rsa', { modulusLength: MIN_RSA_BITS }) : generateKeyPairSync('ed25519');
  return { privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicKey: publicKeyOf(privateKey).publicKey };
}

function parsePrivateKey(pem: string, source: string): KeyObject {
  // OpenSSL's error for a missing passphrase does not say so ("interrupted or cancelled").
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem)) {
    throw new MailfleetError(ErrorCodes.DKIM_KEY_INVALID, `${source} is encrypted with a passphrase`, 'store the key without a passphrase: `openssl pkey -in KEY -out KEY.plain`');
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new MailfleetError(
      ErrorCodes.DKIM_KEY_INVALID,
      `${source} holds no PEM private key (${(err as Error).message})`,
      `expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----; ${GENERATE_HINT}`,
    );
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new MailfleetError(ErrorCodes.DKIM_KEY_INVALID, `${source} is a ${bits}-bit RSA key; DKIM needs at least ${MIN_RSA_BITS} bits`, GENERATE_HINT);
    }
  } else if (key.asymmetricKeyType !== 'ed25519') {
    throw new MailfleetError(
      ErrorCodes.DKIM_KEY_INVALID,
      `${source} is a ${key.asymmetricKeyType ?? 'unknown'} key; DKIM signs with RSA (rsa-sha256) or Ed25519 (ed25519-sha256)`,
      GENERATE_HINT,
    );
  }
  return key;
}

function publicKeyOf(privateKey: KeyObject): DkimPublicKey {
  const publicKey = createPublicKey(privateKey);
  if (privateKey.asymmetricKeyType === 'ed25519') {
    // RFC 8463 §4: p= is the raw 32-byte key, not the SubjectPublicKeyInfo RSA records use.
    const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');
    return { algorithm: 'ed25519-sha256', publicKey: raw.toString('base64') };
  }
  return { algorithm: 'rsa-sha256', publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64') };
}

export interface ActiveKey {
  selector: string;
  algorithm: DkimAlgorithm;
  privateKey: KeyObject;
}

export interface SigningDomain {
  domain: string;
  keys: ActiveKey[];
}

/**
 * The active keys of each configured sender domain, most specific domain first (mail from
 * a.example.com signs with a.example.com's keys over example.com's). Throws with the key's
 * name when one cannot be read, or when a domain has two active keys of one algorithm.
 */
export function loadSigningKeys(senderDomains: readonly SenderDomainConfig[]): SigningDomain[] {
  const domains: SigningDomain[] = [];
  for (const d of senderDomains) {
    if (!d.dkim) continue;
    const loaded = d.dkim.keys.map((k) => ({ ...loadDkimKey(k.privateKeyFile, k.selector), active: k.active }));
    const keys: ActiveKey[] = [];
    for (const k of loaded.filter((x) => x.active)) {
      const twin = keys.find((x) => x.algorithm === k.algorithm);
      if (twin) {
        throw new MailfleetError(ErrorCodes.DKIM_KEY_INVALID, `sender domain ${d.domain} has two active ${k.algorithm} keys (selectors ${twin.selector} and ${k.selector})`, 'mark all but one of them `active: false`');
      }
      keys.push({ selector: k.selector, algorithm: k.algorithm, privateKey: createPrivateKey(k.privateKeyPem) });
    }
    if (keys.length) domains.push({ domain: d.domain, keys });
  }
  domains.sort((a, b) => b.domain.length - a.domain.length);
  return domains;
}
