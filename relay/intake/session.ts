/**
 * What intake marks on an engine session and reads of the engine's connection objects: the
 * state the intake modules share about one client.
 */
import net from 'node:net';
import type { Session } from './smtp/session.js';
import type { SmtpEngine } from './smtp/server.js';
import type { Address } from './smtp/syntax.js';
import type { Suppression } from '../suppression.js';

/** Intake's marks on a session. */
export interface SessionState {
  /** Admitted by the listener's crowd (crowding.ts): counted per client and in the sessions gauge. */
  counted?: boolean;
  /** When the session was greeted, for limits.startTimeout. */
  connectedAt?: number;
  /** Logged in, or a MAIL FROM accepted: the start deadline no longer applies. */
  started?: boolean;
  authFailures?: number;
}

/** A recipient accepted with suppression.action `bounce`: stored as failed, so the queue bounces it without an attempt. */
export type RcptAddress = Address & { suppressed?: Suppression };

/** The parts of the engine's connection object that draining, stress and making room read. */
export interface InternalConnection {
  session?: { envelope?: { mailFrom?: unknown } };
  /** Closed to make room for a newcomer (crowding.ts): no longer counted as live. */
  _evicted?: boolean;
  _dataStream?: unknown;
  _handlerPending?: boolean;
  _closing?: boolean;
  _armTimeout?(): void;
  send(code: number, text: string, enhanced?: string | false): void;
  close(): void;
}

/** The engine's set of open connections. */
export function connectionsOf(server: SmtpEngine): Set<InternalConnection> {
  return server.connections;
}

/** The user the session logged in as, if it did. */
export function sessionUser(session: Session): string | undefined {
  return typeof session.user === 'string' ? session.user : undefined;
}

/** Strips an IPv4-mapped IPv6 prefix so 127.0.0.1 matches 127.0.0.0/8. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}
