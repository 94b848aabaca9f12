/**
 * Turns what a delivery attempt met (a reply line, a socket error, a DNS answer) into a
 * per-recipient outcome: delivered (2xx), deferred (4xx, timeouts, refused connections,
 * SERVFAIL) or failed (5xx, NXDOMAIN, null MX).
 */
export type OutcomeKind = 'delivered' | 'deferred' | 'failed';

export interface RecipientOutcome {
  address: string;
  kind: OutcomeKind;
  /** The remote reply or a description of what happened, for logs and DSNs. */
  reply: string;
  /** Enhanced status code (RFC 3463), e.g. 2.0.0, 4.4.1, 5.1.1. */
  statusCode: string;
  remoteMta?: string;
}

/** A problem that applies to a whole destination or connection, before any recipient was tried. */
export class DeliveryFailure extends Error {
  constructor(
    readonly kind: 'deferred' | 'failed',
    readonly statusCode: string,
    readonly reply: string,
    readonly remoteMta?: string,
  ) {
    super(reply);
    this.name = 'DeliveryFailure';
  }

  forRecipients(addresses: string[]): RecipientOutcome[] {
    return addresses.map((address) => ({ address, kind: this.kind, reply: this.reply, statusCode: this.statusCode, remoteMta: this.remoteMta }));
  }
}

const ENHANCED = /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b/;

export function classifyReply(reply: string): { kind: OutcomeKind; statusCode: string } {
  const code = Number(reply.slice(0, 3));
  const kind: OutcomeKind = code >= 200 && code < 300 ? 'delivered' : code >= 500 && code < 600 ? 'failed' : 'deferred';
  const enhanced = ENHANCED.exec(reply)?.[1];
  // An enhanced code whose class disagrees with the basic code is ignored (RFC 3463 says the basic code wins).
  const consistent = enhanced && enhanced[0] === String(code)[0];
  const statusCode = consistent ? enhanced : kind === 'delivered' ? '2.0.0' : kind === 'failed' ? '5.0.0' : '4.0.0';
  return { kind, statusCode };
}

/** Socket-level and library errors: all temporary, each with the status a person can read. */
export function classifyError(err: NodeJS.ErrnoException & { response?: string; responseCode?: number }, remoteMta?: string): DeliveryFailure {
  if (err.response && err.responseCode) {
    const { kind, statusCode } = classifyReply(err.response);
    return new DeliveryFailure(kind === 'failed' ? 'failed' : 'deferred', statusCode, err.response, remoteMta);
  }
  const original = (err as { originalCode?: string }).originalCode ?? err.code;
  const where = remoteMta ? ` (${remoteMta})` : '';
  switch (original) {
    case 'ECONNREFUSED':
      return new DeliveryFailure('deferred', '4.4.1', `connection refused${where}`, remoteMta);
    case 'ETIMEDOUT':
    case 'ETIMEOUT':
      return new DeliveryFailure('deferred', '4.4.1', `no answer: ${err.message}${where}`, remoteMta);
    case 'ETLS':
      return new DeliveryFailure('deferred', '4.7.5', `TLS failed: ${err.message}${where}`, remoteMta);
    default:
      return new DeliveryFailure('deferred', '4.4.2', `connection lost: ${err.message}${where}`, remoteMta);
  }
}
