/**
 * A session as the listener's handlers see it (smtp-server's SMTPServerSession, the fields
 * intake reads): who is connected, how, and the transaction under way.
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type tls from 'node:tls';
import type { Address } from './syntax.js';

export interface Session {
  id: string;
  secure: boolean;
  remoteAddress: string;
  clientHostname: string;
  openingCommand: string | false;
  hostNameAppearsAs: string | false;
  transmissionType: string;
  tlsOptions: tls.CipherNameAndProtocol | false;
  servername?: string;
  user?: unknown;
  envelope: { mailFrom: Address | false; rcptTo: Address[]; bodyType: string; smtpUtf8: boolean };
  transaction: number;
}

/** The body stream onData gets: its size so far and whether it passed the limit. */
export type DataStream = Readable & { byteLength: number; sizeExceeded: boolean };

export type HandlerError = (Error & { responseCode?: number }) | null | undefined;

/** After STARTTLS the client starts over (RFC 3207 4.2): nothing it said before counts, not even a login. */
export function secureSession(s: Session, socket: tls.TLSSocket): void {
  s.secure = true;
  s.user = undefined;
  s.hostNameAppearsAs = false;
  s.openingCommand = false;
  s.tlsOptions = socket.getCipher();
  s.servername = (socket as tls.TLSSocket & { servername?: string }).servername || undefined;
}

/** A new session on an accepted socket (TLS already, on an implicit-TLS port). */
export function newSession(socket: Socket, id: string, secure: boolean): Session {
  const remoteAddress = normalizeAddress(socket.remoteAddress);
  const session: Session = {
    id,
    secure,
    // Not the local address and ports: nothing reads them, and each costs a system call per session.
    remoteAddress,
    // No reverse lookup (the relay does its own where it needs one): the address literal.
    clientHostname: `[${remoteAddress}]`,
    openingCommand: false,
    hostNameAppearsAs: false,
    transmissionType: 'SMTP',
    tlsOptions: secure ? (socket as tls.TLSSocket).getCipher() : false,
    envelope: { mailFrom: false, rcptTo: [], bodyType: '7bit', smtpUtf8: false },
    transaction: 1,
  };
  if (secure) session.servername = (socket as tls.TLSSocket).servername || undefined;
  return session;
}

/** SMTP, ESMTP, ESMTPS, ESMTPSA ... as the Received header says (RFC 3848). */
export function transmissionType(s: Session): string {
  return `${s.openingCommand === 'EHLO' ? 'E' : ''}SMTP${s.secure ? 'S' : ''}${s.user ? 'A' : ''}`;
}

/** An address without the IPv4-mapped prefix of a dual-stack socket, IPv6 in lower case. */
function normalizeAddress(address: string | undefined): string {
  return (address ?? '').replace(/^::ffff:/i, '').toLowerCase();
}
