/**
 * DKIM signing (RFC 6376; Ed25519 per RFC 8463): each message whose header From is a
 * configured sender domain (or a subdomain of one) gets one signature per active key,
 * relaxed/relaxed, over a header list with From and the other headers a reader sees
 * over-signed, so nobody can add a second From or Subject after signing.
 *
 * mailauth does the canonicalisation, hashing and header formatting. Its signer has no
 * over-signing, so this module drives the same mailauth pieces and only adds the extra names
 * to `h=`: a name listed once more than the header occurs hashes nothing (RFC 6376 5.4.2),
 * and makes verifiers fail a message that gains that header later.
 *
 * mailauth's tools bring joi, libmime and tldts (~30 MiB of the queue thread's memory), so they
 * load only in a relay that has keys: when its signer is made, before the first message.
 */
import crypto from 'node:crypto';
import type { Readable } from 'node:stream';
import { domainOf } from './address.js';
import type { SenderDomainConfig } from './config.js';
import { loadSigningKeys, type DkimAlgorithm, type SigningDomain } from './dkim-keys.js';
import { fromAddresses, headerFacts } from './headers.js';

type Mailauth = {
  dkimBody: typeof import('mailauth/lib/dkim/body/index.js').dkimBody;
  generateCanonicalizedHeader: typeof import('mailauth/lib/dkim/header/index.js').generateCanonicalizedHeader;
} & Pick<typeof import('mailauth/lib/tools.js'), 'formatSignatureHeaderLine' | 'getSigningHeaderLines' | 'parseHeaders'>;

let mailauth: Promise<Mailauth> | undefined;

/** mailauth's signing pieces, loaded once. */
function loadMailauth(): Promise<Mailauth> {
  mailauth ??= Promise.all([import('mailauth/lib/dkim/body/index.js'), import('mailauth/lib/dkim/header/index.js'), import('mailauth/lib/tools.js')]).then(([body, header, tools]) => ({
    dkimBody: body.dkimBody,
    generateCanonicalizedHeader: header.generateCanonicalizedHeader,
    formatSignatureHeaderLine: tools.formatSignatureHeaderLine,
    getSigningHeaderLines: tools.getSigningHeaderLines,
    parseHeaders: tools.parseHeaders,
  }));
  return mailauth;
}

/** Headers signed when present. */
const SIGNED = [
  'From', 'Sender', 'Reply-To', 'Subject', 'Date', 'Message-ID', 'To', 'Cc', 'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding',
  'Content-ID', 'Content-Description', 'In-Reply-To', 'References', 'List-Id', 'List-Unsubscribe', 'List-Unsubscribe-Post', 'Feedback-ID',
];
/** Headers also signed once more than they occur (and so when absent: nobody may add them). */
const OVERSIGNED = ['From', 'Reply-To', 'Subject', 'Date', 'To', 'Cc', 'Content-Type', 'MIME-Version', 'List-Unsubscribe', 'List-Unsubscribe-Post'];

export interface Signed {
  /** `DKIM-Signature: ...` header fields, each ending in CRLF, to put before the message. */
  headers: string;
  domain: string;
  algorithms: DkimAlgorithm[];
}

export class DkimSigner {
  private constructor(private readonly domains: SigningDomain[]) {
    // Loaded while the relay starts, not at the first message (a failure shows at signing, which defers).
    if (domains.length) loadMailauth().catch(() => undefined);
  }

  /**
   * Loads the active keys of every sender domain. A key that cannot be read or parsed throws
   * a MailfleetError naming its file: the relay must not start and then send unsigned mail.
   */
  /** Signs with the active keys of the configured sender domains (relay/dkim-keys.ts loads and checks them). */
  static fromConfig(senderDomains: readonly SenderDomainConfig[]): DkimSigner {
    return new DkimSigner(loadSigningKeys(senderDomains));
  }

  get empty(): boolean {
    return this.domains.length === 0;
  }

  /** The configured domain that signs mail from this header From domain, if any. */
  domainFor(fromDomain: string): SigningDomain | undefined {
    const d = fromDomain.toLowerCase();
    return this.domains.find((s) => d === s.domain || d.endsWith(`.${s.domain}`));
  }

  /**
   * Signs a message (its header section is the first `headerLength` bytes). Undefined when no
   * configured domain signs for its From. Throws when signing fails: the caller defers the
   * message rather than send it unsigned.
   */
  async sign(message: Readable, headerLength: number, signTime = new Date()): Promise<Signed | undefined> {
    const { dkimBody, generateCanonicalizedHeader, formatSignatureHeaderLine, getSigningHeaderLines, parseHeaders } = await loadMailauth();
    const hasher = dkimBody('relaxed', 'sha256', false);
    const headerChunks: Buffer[] = [];
    let signing: SigningDomain | undefined;
    let seen = 0;
    for await (const data of message) {
      const chunk = data as Buffer;
      const headerPart = Math.max(0, Math.min(chunk.length, headerLength - seen));
      if (headerPart) headerChunks.push(chunk.subarray(0, headerPart));
      seen += chunk.length;
      if (!signing && seen >= headerLength) {
        // The header is complete: mail no configured domain signs is not read any further.
        const from = fromAddresses(headerFacts(Buffer.concat(headerChunks)))[0];
        signing = from ? this.domainFor(domainOf(from)) : undefined;
        if (!signing) return undefined;
      }
      if (headerPart < chunk.length) hasher.update(chunk.subarray(headerPart));
    }
    if (!signing) return undefined;
    const header = Buffer.concat(headerChunks);
    const bodyHash = hasher.digest('base64');

    const { parsed } = parseHeaders(header);
    const lines = getSigningHeaderLines(parsed, SIGNED.join(':'));
    const signingLines = { headers: lines.headers, keys: [lines.keys, ...OVERSIGNED].filter(Boolean).join(': ') };

    const signatures: string[] = [];
    for (const key of signing.keys) {
      const { canonicalizedHeader, dkimHeaderOpts } = generateCanonicalizedHeader('DKIM', signingLines, {
        signingDomain: signing.domain,
        selector: key.selector,
        algorithm: key.algorithm,
        canonicalization: 'relaxed/relaxed',
        bodyHash,
        signTime,
      });
      // RSA signs the canonical header with SHA-256; Ed25519 (RFC 8463) signs its SHA-256 digest.
      const signature =
        key.algorithm === 'rsa-sha256'
          ? crypto.sign('rsa-sha256', canonicalizedHeader, key.privateKey)
          : crypto.sign(null, crypto.createHash('sha256').update(canonicalizedHeader).digest(), key.privateKey);
      dkimHeaderOpts.b = signature.toString('base64');
      signatures.push(formatSignatureHeaderLine('DKIM', dkimHeaderOpts, true) + '\r\n');
    }
    return { headers: signatures.join(''), domain: signing.domain, algorithms: signing.keys.map((k) => k.algorithm) };
  }
}
