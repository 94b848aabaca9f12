/**
 * The SMTP engine's pure parts: what a command line says (its verb, the address and
 * parameters of MAIL and RCPT, a HELO name) and how a reply is written. Every check here
 * refuses what smtp-server refused (its 3.21 rules, which the engine replaces), so clients
 * see the same server: addresses with control or invisible characters, edge dots, an
 * unbalanced IP literal, a path over 253 octets; parameters given twice, valueless or with
 * control characters behind xtext (ENVID=a+0D+0A).
 */
import net from 'node:net';
import { domainToUnicode } from 'node:url';

/** C0 and C1 control characters: never in a reply line, a stored name or a parameter. */
// eslint-disable-next-line no-control-regex
export const CONTROL_CHARS = /[\x00-\x1F\x7F-\x9F]/;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS_GLOBAL = /[\x00-\x1F\x7F-\x9F]/g;
/** Also the zero-width characters that hide an address's real form. */
// eslint-disable-next-line no-control-regex
const ADDRESS_UNSAFE_CHARS = /[\x00-\x1F\x7F-\x9F\u200B\u2060\uFEFF]/;
const HTTP_REQUEST = /^(OPTIONS|GET|HEAD|POST|PUT|DELETE|TRACE|CONNECT) \/.* HTTP\/\d\.\d$/i;
const MAX_HELO_NAME = 300;

/** A MAIL or RCPT argument as parsed: smtp-server's shape, which intake reads. */
export interface Address {
  address: string;
  args: Record<string, string | true> | false;
}

/** The verb of a command line, upper-cased ('' for an empty line). */
export function verbOf(line: string): string {
  const space = line.indexOf(' ');
  return (space < 0 ? line : line.slice(0, space)).toUpperCase();
}

/** A browser's request sent to the SMTP port (a hostile page's cross-protocol attempt). */
export function isHttpRequest(line: string): boolean {
  return HTTP_REQUEST.test(line);
}

/** The words of a command line, split on whitespace. */
export function wordsOf(line: string): string[] {
  return line.trim().split(/\s+/);
}

/** A HELO/EHLO name we can store: bare addresses and odd names pass, control characters and 300+ characters do not. */
export function acceptableHeloName(name: string): boolean {
  return name.length <= MAX_HELO_NAME && !CONTROL_CHARS.test(name);
}

function decodeXtext(value: string): string {
  return value.replace(/\+([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** The result of parsing MAIL FROM or RCPT TO: the address, or why it is refused. */
export type ParsedAddress = (Address & { duplicate?: string }) | undefined;

/**
 * `MAIL FROM:<a@b> SIZE=10` or `RCPT TO:<a@b>`: the address (a source route dropped, the
 * domain as Unicode) and its parameters. Undefined when the command or the address is malformed.
 */
export function parseAddressCommand(name: 'MAIL FROM' | 'RCPT TO', line: string): ParsedAddress {
  const colon = line.indexOf(':');
  if (colon < 0 || line.slice(0, colon).trim().toUpperCase() !== name) return undefined;
  const parts = line
    .slice(colon + 1)
    .trim()
    .split(/\s+/);
  let address = parts.shift() ?? '';
  if (!/^<[^<>]*>$/.test(address)) return undefined;
  // RFC 5321 4.1.2: a source route (@relay.example:) is accepted and ignored.
  address = address.slice(1, -1).replace(/^@[^\s,:@]+(?:,@[^\s,:@]+)*:/, '');
  let args: Record<string, string | true> | false = false;
  let duplicate: string | undefined;
  for (const param of parts) {
    const eq = param.indexOf('=');
    const key = (eq < 0 ? param : param.slice(0, eq)).toUpperCase();
    if (!key.trim()) continue;
    const raw = eq < 0 ? '' : param.slice(eq + 1);
    let value: string | true = raw || true;
    if (typeof value === 'string') {
      value = decodeXtext(value);
      if (CONTROL_CHARS.test(value)) return undefined;
    }
    args ||= {};
    if (key in args) duplicate = key;
    args[key] = value;
  }
  const checked = checkAddress(name, address);
  if (checked === undefined) return undefined;
  return duplicate ? { address: checked, args, duplicate } : { address: checked, args };
}

/** The address as stored (an IP literal normalised, the domain as Unicode), or undefined when refused. */
function checkAddress(name: 'MAIL FROM' | 'RCPT TO', address: string): string | undefined {
  if (!address) return address; // the null sender (and, refused by the caller, an empty recipient)
  if (ADDRESS_UNSAFE_CHARS.test(address)) return undefined;
  // RFC 5321 4.1.1.3: the domainless postmaster is a recipient.
  if (name === 'RCPT TO' && address.toLowerCase() === 'postmaster') return address;
  const at = address.split('@');
  if (at.length !== 2 || !at[0] || !at[1]) return undefined;
  const [local, domain] = at as [string, string];
  // RFC 5321 4.5.3.1.3: a path of at most 256 octets with its brackets.
  if (local.length + 1 + domain.length > 253) return undefined;
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return undefined;
  if (domain.startsWith('[') && domain.endsWith(']')) {
    const literal = domain.slice(1, -1);
    if (/^ipv6:/i.test(literal)) {
      // A zone (fe80::1%eth0) names an interface of the sender's host: no address for mail.
      const ip = literal.slice(5);
      return net.isIPv6(ip) && !ip.includes('%') ? `${local}@[IPv6:${normalizeIPv6(ip)}]` : undefined;
    }
    return net.isIPv4(literal) ? address : undefined;
  }
  if (domain.startsWith('.') || domain.endsWith('.') || domain.includes('..') || domain.includes('.-') || domain.includes('-.') || !/^[a-zA-Z0-9\u0080-\uFFFF.-]+$/.test(domain)) return undefined;
  // Only an xn-- label needs decoding: skip punycode's work for every plain domain.
  if (!domain.includes('xn--') && !domain.includes('XN--')) return address;
  const unicode = domainToUnicode(domain);
  return unicode ? `${local}@${unicode}` : undefined;
}

/** An IPv6 address in its canonical text (RFC 5952): lower case, the longest zero run compressed, an embedded IPv4 address dotted. */
export function normalizeIPv6(address: string): string {
  const hex = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  if (!address.includes('.')) return hex;
  const m = /^(.*?)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(hex);
  if (!m) return address.toLowerCase();
  const hi = parseInt(m[2]!, 16);
  const lo = parseInt(m[3]!, 16);
  return `${m[1]}${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Why MAIL's parameters are refused ([code, enhanced code or undefined, text]), or undefined. */
export function mailParamsRefusal(args: Address['args'], maxSize: number): [number, string | undefined, string] | undefined {
  if (!args) return undefined;
  for (const key of ['BODY', 'SIZE', 'RET', 'ENVID']) if (args[key] === true || args[key] === '') return [501, undefined, `Error: ${key} parameter requires a value`];
  const size = args.SIZE;
  if (typeof size === 'string') {
    if (!/^\d{1,20}$/.test(size)) return [501, undefined, 'Error: Bad message size syntax'];
    if (maxSize && Number(size) > maxSize) return [552, '5.3.4', `Error: message exceeds fixed maximum message size ${maxSize}`];
  }
  const body = args.BODY;
  if (typeof body === 'string' && body.toLowerCase() !== '7bit' && body.toLowerCase() !== '8bitmime') return [501, undefined, 'Invalid BODY parameter value. Must be 7BIT or 8BITMIME'];
  if (args.SMTPUTF8 !== undefined && args.SMTPUTF8 !== true) return [501, undefined, 'Invalid SMTPUTF8 parameter. This flag does not accept a value'];
  return undefined;
}

/** Why RCPT's parameters are refused, or undefined. */
export function rcptParamsRefusal(args: Address['args']): [number, string | undefined, string] | undefined {
  if (!args) return undefined;
  for (const key of ['NOTIFY', 'ORCPT']) if (args[key] === true || args[key] === '') return [501, undefined, `Error: ${key} parameter requires a value`];
  return undefined;
}

/** The enhanced status code a reply without its own gets (RFC 3463), by its basic code. */
const ENHANCED_BY_CODE: Record<number, string> = {
  211: '2.0.0', 214: '2.0.0', 221: '2.0.0', 235: '2.7.0', 250: '2.0.0', 252: '2.1.5',
  421: '4.4.2', 450: '4.2.1', 451: '4.3.0', 452: '4.2.2', 454: '4.7.0',
  500: '5.5.2', 501: '5.5.4', 502: '5.5.1', 503: '5.5.1', 504: '5.5.4', 530: '5.7.0', 535: '5.7.8', 538: '5.7.0',
  550: '5.1.1', 551: '5.1.6', 552: '5.2.2', 553: '5.1.3', 554: '5.6.0', 555: '5.5.4',
};
/** A reply text that starts with its own enhanced status code is sent as it is. */
const OWN_ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * One reply as written to the socket. `enhanced`: the enhanced status code, `false` for
 * none (the greeting, HELO/EHLO, 3xx), undefined for the one the basic code implies. Control
 * characters in the text (an application's message built from what a client sent) become
 * spaces: only this function ends a line.
 */
export function formatReply(code: number, text: string | string[], enhanced?: string | false): string {
  const lines = Array.isArray(text) ? text : [text];
  let prefix = '';
  if (enhanced !== false && (code < 300 || code >= 400)) {
    const own = lines.length === 1 && OWN_ENHANCED_CODE.test(lines[0]!);
    if (!own) prefix = `${enhanced ?? ENHANCED_BY_CODE[code] ?? `${Math.floor(code / 100)}.0.0`} `;
  }
  let out = '';
  for (let i = 0; i < lines.length; i++) {
    // (An application's error may come without a message: no "undefined" on the wire.)
    const raw = lines[i] ?? '';
    const line = CONTROL_CHARS.test(raw) ? raw.replace(CONTROL_CHARS_GLOBAL, ' ') : raw;
    const sep = i < lines.length - 1 ? '-' : line || prefix ? ' ' : code === 334 ? ' ' : '';
    out += `${code}${sep}${prefix}${line}\r\n`;
  }
  return out;
}
