/**
 * Open and click tracking's rewrite: the links in a message's text parts (text/html and
 * text/plain, not attachments) replaced by tracking links, and a pixel added to its HTML,
 * changing nothing else. mailsplit (nodemailer's author's MIME splitter) cuts the message into
 * headers, bodies and boundaries and joins the untouched ones back byte for byte; parse5 (the
 * HTML parser of jsdom) finds each `<a href>` with its place in the source, and linkify-it
 * (markdown-it's) the URLs in plain text. The rewrite splices new bytes in at those places.
 *
 * A part's text is read byte for byte as latin1: tags, attributes and URLs are ASCII in every
 * ASCII-compatible charset (UTF-8, ISO-8859-x, windows-125x), so their places are byte
 * places and the bytes between them stay exactly as they were; a URL with other characters is
 * read in the part's own charset for its token. A part in another charset (UTF-16) is left
 * alone. Quoted-printable and base64 parts are decoded and encoded again the same way: their
 * content is the same outside the links, their line breaks are the encoder's.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { LinkifyIt } from 'linkify-it';
import { Joiner, Splitter } from 'mailsplit';
import { parse, type DefaultTreeAdapterTypes } from 'parse5';

export interface RewritePlan {
  /** The tracking link for a URL, or undefined to leave it (another scheme, an excluded domain). */
  link: (url: string) => string | undefined;
  /** The open pixel's URL, added to the HTML; none without. */
  pixel?: string;
}

export interface Rewritten {
  message: Buffer;
  links: number;
  pixel: boolean;
}

/** The attribute that keeps one link as it is: `<a href="..." data-mailfleet-track="off">`. */
export const OPT_OUT_ATTRIBUTE = 'data-mailfleet-track';
const MAX_LINE = 998;
const ASCII_COMPATIBLE = /^(utf-?8|us-ascii|ascii|iso-8859-\d+|windows-12\d\d|cp12\d\d|koi8-[ru]|latin\d?)$/i;

type Node = DefaultTreeAdapterTypes.Node;
type Element = DefaultTreeAdapterTypes.Element;
type Splice = { start: number; end: number; text: string };

const linkify = new LinkifyIt({ fuzzyLink: false, fuzzyEmail: false, fuzzyIP: false });

/** A URL as the part spells it, in its own charset (for the token). */
function inCharset(latin1: string, charset: string): string {
  if (/^[\x20-\x7e]*$/.test(latin1)) return latin1;
  try {
    return new TextDecoder(charset).decode(Buffer.from(latin1, 'latin1'));
  } catch {
    return latin1;
  }
}

function applySplices(text: string, splices: Splice[]): string {
  let out = '';
  let at = 0;
  for (const s of splices.sort((a, b) => a.start - b.start)) {
    out += text.slice(at, s.start) + s.text;
    at = s.end;
  }
  return out + text.slice(at);
}

const attrEscape = (url: string) => url.replace(/&/g, '&amp;').replace(/"/g, '&quot;');

/** The HTML with each `<a href>` rewritten and the pixel before `</body>` (pure). */
export function rewriteHtml(html: string, charset: string, plan: RewritePlan): { html: string; links: number; pixel: boolean } {
  const doc = parse(html, { sourceCodeLocationInfo: true });
  const splices: Splice[] = [];
  let bodyEnd: number | undefined;
  const walk = (node: Node) => {
    const el = node as Element;
    if (el.tagName === 'a' && el.sourceCodeLocation?.attrs?.href) {
      const href = el.attrs.find((a) => a.name === 'href')!.value.trim();
      const optOut = el.attrs.find((a) => a.name === OPT_OUT_ATTRIBUTE)?.value.toLowerCase();
      const tracked = optOut === 'off' || optOut === 'false' ? undefined : plan.link(inCharset(href, charset));
      const loc = el.sourceCodeLocation.attrs.href;
      if (tracked) splices.push({ start: loc.startOffset, end: loc.endOffset, text: `href="${attrEscape(tracked)}"` });
    }
    if (el.tagName === 'body' && el.sourceCodeLocation?.endTag) bodyEnd = el.sourceCodeLocation.endTag.startOffset;
    for (const child of (node as Element).childNodes ?? []) walk(child);
    if ((node as DefaultTreeAdapterTypes.Template).content) walk((node as DefaultTreeAdapterTypes.Template).content);
  };
  walk(doc);
  const links = splices.length;
  if (plan.pixel) {
    const at = bodyEnd ?? html.length;
    splices.push({ start: at, end: at, text: `<img src="${attrEscape(plan.pixel)}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0">` });
  }
  return { html: applySplices(html, splices), links, pixel: !!plan.pixel };
}

/** The text with each http(s) URL rewritten (pure). */
export function rewriteText(text: string, charset: string, plan: RewritePlan): { text: string; links: number } {
  const splices: Splice[] = [];
  for (const m of linkify.match(text) ?? []) {
    if (m.schema !== 'http:' && m.schema !== 'https:') continue;
    const tracked = plan.link(inCharset(m.url, charset));
    if (tracked) splices.push({ start: m.index, end: m.lastIndex, text: tracked });
  }
  return { text: applySplices(text, splices), links: splices.length };
}

interface MimeNodeLike {
  contentType?: string;
  disposition?: string | false;
  charset?: string | false;
  encoding?: string;
}
type Chunk = { type: 'node' | 'body' | 'data'; value?: Buffer; node?: MimeNodeLike } & MimeNodeLike;

const decodeBody = (raw: Buffer, encoding: string | undefined) => (encoding === 'base64' ? Buffer.from(raw.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64') : encoding === 'quoted-printable' ? decodeQp(raw) : raw);

function decodeQp(raw: Buffer): Buffer {
  const text = raw.toString('latin1').replace(/=\r?\n/g, '');
  const out = Buffer.alloc(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      out[n++] = parseInt(text.slice(i + 1, i + 3), 16);
      i += 2;
    } else out[n++] = text.charCodeAt(i) & 0xff;
  }
  return out.subarray(0, n);
}

/** Quoted-printable (RFC 2045 6.7) with CRLF line ends kept as line ends and lines of at most 76. */
function encodeQp(data: Buffer): Buffer {
  const lines = data.toString('latin1').split('\r\n');
  const out: string[] = [];
  for (const line of lines) {
    let encoded = '';
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i);
      const last = i === line.length - 1;
      encoded += (c >= 33 && c <= 126 && c !== 61) || ((c === 32 || c === 9) && !last) ? line[i] : `=${c.toString(16).toUpperCase().padStart(2, '0')}`;
    }
    // Soft breaks never split an =XX.
    let rest = encoded;
    while (rest.length > 76) {
      let cut = 75;
      const eq = rest.lastIndexOf('=', cut - 1);
      if (eq >= cut - 2) cut = eq;
      out.push(`${rest.slice(0, cut)}=`);
      rest = rest.slice(cut);
    }
    out.push(rest);
  }
  return Buffer.from(out.join('\r\n'), 'latin1');
}

const encodeBody = (data: Buffer, encoding: string | undefined, trailing: string) => {
  if (encoding === 'base64') return Buffer.from((data.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n') + trailing, 'latin1');
  if (encoding === 'quoted-printable') return Buffer.concat([encodeQp(data), Buffer.from(trailing)]);
  return Buffer.concat([data, Buffer.from(trailing)]);
};

/** Rewrites one decoded part; undefined when it must stay as it is (a line too long for SMTP). */
function rewritePart(node: MimeNodeLike, raw: Buffer, plan: RewritePlan, counts: { links: number; pixel: boolean }): Buffer | undefined {
  const charset = (node.charset || 'us-ascii').toString();
  if (!ASCII_COMPATIBLE.test(charset)) return undefined;
  // A part ends with the CRLF before the boundary: keep it out of the content, then put it back.
  const trailing = /\r?\n$/.exec(raw.toString('latin1'))?.[0] ?? '';
  const encoded = trailing ? raw.subarray(0, raw.length - trailing.length) : raw;
  const text = decodeBody(encoded, node.encoding).toString('latin1');
  const html = node.contentType === 'text/html';
  const done = html ? rewriteHtml(text, charset, { ...plan, pixel: counts.pixel ? undefined : plan.pixel }) : { ...rewriteText(text, charset, plan), pixel: false };
  if (!done.links && !done.pixel) return undefined;
  const out = Buffer.from(html ? (done as { html: string }).html : (done as { text: string }).text, 'latin1');
  if (node.encoding !== 'base64' && node.encoding !== 'quoted-printable' && out.toString('latin1').split(/\r?\n/).some((l) => l.length > MAX_LINE)) return undefined;
  counts.links += done.links;
  counts.pixel ||= done.pixel;
  return encodeBody(out, node.encoding, trailing);
}

/** Splits, rewrites the text parts that are not attachments, joins. */
export async function rewriteMessage(message: Buffer, plan: RewritePlan): Promise<Rewritten> {
  const counts = { links: 0, pixel: false };
  let current: { node: Chunk; body: Buffer[] } | undefined;
  const flush = (t: Transform) => {
    if (!current) return;
    const raw = Buffer.concat(current.body);
    const rewritten = rewritePart(current.node, raw, plan, counts);
    t.push({ type: 'body', node: current.node, value: rewritten ?? raw });
    current = undefined;
  };
  const rewriter = new Transform({
    objectMode: true,
    transform(chunk: Chunk, _enc, cb: TransformCallback) {
      if (chunk.type === 'body' && current) current.body.push(chunk.value!);
      else {
        flush(this);
        this.push(chunk);
        if (chunk.type === 'node' && (chunk.contentType === 'text/html' || chunk.contentType === 'text/plain') && chunk.disposition !== 'attachment') current = { node: chunk, body: [] };
      }
      cb();
    },
    flush(cb: TransformCallback) {
      flush(this);
      cb();
    },
  });
  const splitter = new Splitter();
  const joiner = new Joiner();
  const out: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    joiner.on('data', (c: Buffer) => out.push(c));
    joiner.on('end', resolve);
    for (const s of [splitter, rewriter, joiner]) s.on('error', reject);
    splitter.pipe(rewriter).pipe(joiner);
    splitter.end(message);
  });
  return { message: Buffer.concat(out), ...counts };
}
