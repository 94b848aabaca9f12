/**
 * VERP return paths: the envelope sender of a message from a sender domain with a return path
 * is `b+QUEUEID-MAC@RETURN-PATH`, so a bounce or complaint sent to it later names the message
 * without a lookup, on any relay of the fleet (the MAC's key is the fleet's Secret). One
 * address per message, not per recipient: a DSN names its recipients itself, and a message to
 * many recipients of one domain stays one transaction. Pure.
 *
 * Lower case throughout: some servers change the case of a local part, and queue ids are
 * upper-case letters and digits only, so their case is restored.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { ErrorCodes, MailfleetError, type ErrorCode } from '../errors.js';

const MAC_LENGTH = 10;
const PATTERN = /^b\+([a-z0-9]{1,40})-([a-z2-7]{10})$/;

function mac(key: string, queueId: string, domain: string): string {
  // base32 (RFC 4648, lower case): letters and digits a local part can carry anywhere.
  const digest = crypto.createHmac('sha256', key).update(`${queueId}@${domain.toLowerCase()}`).digest();
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let out = '';
  for (let i = 0; out.length < MAC_LENGTH; i++) out += alphabet[digest[i]! & 31];
  return out;
}

/** The return path of message `queueId` sent from a sender domain whose return path domain is `domain`. */
export function returnPathAddress(queueId: string, domain: string, key: string): string {
  return `b+${queueId.toLowerCase()}-${mac(key, queueId.toUpperCase(), domain)}@${domain.toLowerCase()}`;
}

export interface ReturnPathOwner {
  /** The sender domain (senderDomains[].domain) that owns the return path domain. */
  senderDomain: string;
  returnPath: string;
}

/** The sender domains that have a return path, as the relay's config lists them. */
export function returnPathOwners(senderDomains: readonly { domain: string; returnPath?: string | undefined }[]): ReturnPathOwner[] {
  return senderDomains.flatMap((d) => (d.returnPath ? [{ senderDomain: d.domain, returnPath: d.returnPath }] : []));
}

/**
 * The envelope sender a message goes out with: its return path when its sender belongs to a
 * sender domain that has one (the null sender of a DSN never does), else the sender itself.
 */
export function envelopeSenderFor(sender: string, queueId: string, owners: readonly ReturnPathOwner[], key: string | undefined): string {
  if (!sender || !key || !owners.length) return sender;
  const domain = sender.slice(sender.lastIndexOf('@') + 1).toLowerCase();
  const owner = owners.find((o) => domain === o.senderDomain.toLowerCase() || domain.endsWith(`.${o.senderDomain.toLowerCase()}`));
  return owner ? returnPathAddress(queueId, owner.returnPath, key) : sender;
}

/** Whose message a report to `address` is about; undefined for any address the relay never made (refused at RCPT). */
export function readReturnPath(address: string, owners: readonly ReturnPathOwner[], key: string): { queueId: string; senderDomain: string } | undefined {
  const at = address.lastIndexOf('@');
  if (at < 0) return undefined;
  const domain = address.slice(at + 1).toLowerCase();
  const owner = owners.find((o) => o.returnPath.toLowerCase() === domain);
  const m = owner && PATTERN.exec(address.slice(0, at).toLowerCase());
  if (!owner || !m) return undefined;
  const queueId = m[1]!.toUpperCase();
  const expected = mac(key, queueId, domain);
  return crypto.timingSafeEqual(Buffer.from(m[2]!), Buffer.from(expected)) ? { queueId, senderDomain: owner.senderDomain } : undefined;
}

/** A key shared by a fleet's relays, from a mounted Secret: at least 32 characters, or the error `code`. */
export function readFleetKey(file: string, field: string, code: ErrorCode, mount: string): string {
  let key: string;
  try {
    key = fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw new MailfleetError(code, `cannot read ${field}: ${(err as Error).message}`, mount);
  }
  if (key.length < 32) throw new MailfleetError(code, `${field} ${file} has ${key.length} characters; at least 32 are needed`, 'make one with `openssl rand -base64 32`');
  return key;
}

/** The fleet's return path key (bounces.keyFile): MF_BOUNCES_KEY_UNREADABLE when it is missing or short. */
export const readBouncesKey = (file: string) => readFleetKey(file, 'bounces.keyFile', ErrorCodes.BOUNCES_KEY_UNREADABLE, "mount the fleet's return path Secret, or fix bounces.keyFile");
