/**
 * Who may relay: a client that logged in, or one in the listener's trusted networks; never an
 * open relay. The decisions are pure; TrustedNetworks remembers each address's answer.
 */
import net from 'node:net';
import type { ListenerConfig } from '../config.js';
import { refusal, type SmtpRefusal } from '../refusals.js';
import { plainAddress } from './session.js';

/** A listener's trusted networks (CIDRs, or single addresses) as one BlockList. */
export function trustedList(cidrs: string[]): net.BlockList {
  const list = new net.BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/');
    const type = net.isIPv6(addr!) ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr!, type);
    else list.addSubnet(addr!, Number(bits), type);
  }
  return list;
}

/**
 * Whether a client address is in the trusted networks. Remembered per address (applications
 * send from a handful of pod addresses, and each connection would otherwise look it up again).
 */
export class TrustedNetworks {
  private readonly list: net.BlockList;
  private readonly known = new Map<string, boolean>();

  constructor(cidrs: string[]) {
    this.list = trustedList(cidrs);
  }

  has(address: string): boolean {
    let trusted = this.known.get(address);
    if (trusted === undefined) {
      const plain = plainAddress(address);
      trusted = this.list.check(plain, net.isIPv6(plain) ? 'ipv6' : 'ipv4');
      if (this.known.size >= 10_000) this.known.clear();
      this.known.set(address, trusted);
    }
    return trusted;
  }
}

/** MAIL FROM: refused on an AUTH-required listener unless the client logged in or is trusted. */
export function mailFromAccessRefusal(loggedIn: boolean, trusted: () => boolean, auth: ListenerConfig['auth']): SmtpRefusal | undefined {
  return !loggedIn && !trusted() && auth === 'required' ? refusal('authRequired') : undefined;
}

/**
 * RCPT TO: refused to a client that neither logged in nor is trusted (whatever the listener's
 * auth setting), and for an address that is not a plain mailbox or picks its own next hop.
 */
export function recipientRefusal(rcpt: string, mayRelay: boolean): SmtpRefusal | undefined {
  if (!mayRelay) return refusal('relayDenied', { rcpt });
  const at = rcpt.lastIndexOf('@');
  const local = rcpt.slice(0, at);
  if (at <= 0 || !/^[^\s@]+\.[^\s@]+$/.test(rcpt.slice(at + 1))) return refusal('notMailbox', { rcpt });
  // Source routes and percent/bang routing would let a client pick the next hop (open relay tricks).
  if (rcpt.startsWith('@') || /[%!]/.test(local) || local.includes('@')) return refusal('routedAddress', { rcpt });
  return undefined;
}

/** RCPT TO one more than limits.maxRecipients allows; a repeated address replaces its earlier entry, so it does not count again. */
export function tooManyRecipients(accepted: readonly { address: string }[], rcpt: string, limit: number): boolean {
  const key = rcpt.toLowerCase();
  return accepted.length >= limit && !accepted.some((r) => r.address.toLowerCase() === key);
}
