/**
 * The signature on every webhook batch: HMAC-SHA256 over `TIMESTAMP.BODY` with each of the
 * webhook's keys, in one header that names each key by its id:
 *
 *     Mailfleet-Signature: t=1765044000;k2026-12=5f3a…;k2026-06=98b1…
 *
 * Stripe's scheme (the timestamp is signed, so a captured request cannot be replayed later),
 * with the key named instead of a version: a receiver checks the key it knows, so keys rotate
 * without a moment in which the relay and the receiver disagree. Pure, and used by
 * `verifySignature` for receivers written in TypeScript; docs/events.md gives the recipe for
 * any other language.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { ErrorCodes, MailfleetError } from '../errors.js';
import type { WebhookConfig } from './config.js';

export const SIGNATURE_HEADER = 'Mailfleet-Signature';
/** The shortest key taken: 256 bits written in base64 or hex are longer. */
export const MIN_KEY_LENGTH = 32;

export interface SigningKey {
  id: string;
  secret: string;
}

function hmac(secret: string, timestamp: number, body: string | Buffer): string {
  return crypto.createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex');
}

/** The header's value for this body, signed at `timestamp` (seconds since the epoch) with every key. */
export function signatureHeader(body: string | Buffer, timestamp: number, keys: readonly SigningKey[]): string {
  return [`t=${timestamp}`, ...keys.map((k) => `${k.id}=${hmac(k.secret, timestamp, body)}`)].join(';');
}

export type Verification = { ok: true; keyId: string } | { ok: false; reason: string };

/** What a receiver does: a signature by one of its keys, over this body, not older than `toleranceSeconds`. */
export function verifySignature(header: string | undefined, body: string | Buffer, keys: readonly SigningKey[], nowSeconds: number, toleranceSeconds = 300): Verification {
  if (!header) return { ok: false, reason: `no ${SIGNATURE_HEADER} header` };
  const fields = new Map(header.split(';').map((part) => {
    const eq = part.indexOf('=');
    return [part.slice(0, eq).trim(), part.slice(eq + 1).trim()] as const;
  }));
  const t = Number(fields.get('t'));
  if (!Number.isSafeInteger(t)) return { ok: false, reason: 'no timestamp (t=)' };
  if (Math.abs(nowSeconds - t) > toleranceSeconds) return { ok: false, reason: `timestamp ${t} is more than ${toleranceSeconds} s from now` };
  for (const key of keys) {
    const given = fields.get(key.id);
    if (!given || !/^[0-9a-f]{64}$/.test(given)) continue;
    if (crypto.timingSafeEqual(Buffer.from(given, 'hex'), Buffer.from(hmac(key.secret, t, body), 'hex'))) return { ok: true, keyId: key.id };
  }
  return { ok: false, reason: 'no signature by a known key matches' };
}

/** A webhook's keys from their files; a missing or short one is MF_WEBHOOK_KEY_UNREADABLE, naming the webhook and key, never the content. */
export function readSigningKeys(webhook: Pick<WebhookConfig, 'name' | 'signingKeys'>): SigningKey[] {
  return webhook.signingKeys.map((k) => {
    let secret: string;
    try {
      secret = fs.readFileSync(k.secretFile, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new MailfleetError(ErrorCodes.WEBHOOK_KEY_UNREADABLE, `cannot read signing key ${k.id} of webhook ${webhook.name}: ${(err as Error).message}`, 'mount the Secret that holds it, or fix events.webhooks[].signingKeys[].secretFile');
    }
    if (secret.length < MIN_KEY_LENGTH) {
      throw new MailfleetError(ErrorCodes.WEBHOOK_KEY_UNREADABLE, `signing key ${k.id} of webhook ${webhook.name} (${k.secretFile}) has ${secret.length} characters; at least ${MIN_KEY_LENGTH} are needed`, 'make one with `openssl rand -base64 32`');
    }
    return { id: k.id, secret };
  });
}
