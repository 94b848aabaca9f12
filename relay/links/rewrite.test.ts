import { describe, expect, it } from 'vitest';
import { rewriteHtml, rewriteMessage, rewriteText, type RewritePlan } from './rewrite.js';

const plan: RewritePlan = {
  link: (url) => (/^https?:\/\//.test(url) && !url.includes('skip.test') ? `https://t.example.com/c/${Buffer.from(url).toString('base64url')}` : undefined),
  pixel: 'https://t.example.com/o/PIXEL',
};
const original = (tracked: string) => Buffer.from(tracked.slice('https://t.example.com/c/'.length), 'base64url').toString();
const crlf = (lines: string[]) => lines.join('\r\n');

/** The parts of a multipart message, split on its boundary lines, raw. */
const parts = (message: Buffer, boundary: string) => message.toString('latin1').split(`--${boundary}`);

describe('rewriteHtml', () => {
  it('rewrites each <a href> in place, keeps every other byte, and puts the pixel before </body>', () => {
    const html = `<html><body><p>Hi <a class="x" href="https://shop.test/a?b=1&amp;c=2">shop</a>, <A HREF='http://news.test/'>news</A></p>\r\n<a href="mailto:x@y.test">mail</a> <a href="#top">top</a></body></html>`;
    const { html: out, links, pixel } = rewriteHtml(html, 'utf-8', plan);
    expect(links).toBe(2);
    expect(pixel).toBe(true);
    const hrefs = [...out.matchAll(/href="(https:\/\/t\.example\.com\/c\/[^"]+)"/g)].map((m) => original(m[1]!));
    expect(hrefs).toEqual(['https://shop.test/a?b=1&c=2', 'http://news.test/']);
    // Everything but the two attributes and the pixel is as it was.
    const back = out.replace(/href="https:\/\/t\.example\.com\/c\/[^"]+"/g, 'HREF').replace(/<img src="https:\/\/t\.example\.com\/o\/PIXEL"[^>]*>/, '');
    expect(back).toBe(html.replace(`href="https://shop.test/a?b=1&amp;c=2"`, 'HREF').replace(`HREF='http://news.test/'`, 'HREF'));
    expect(out.indexOf('/o/PIXEL')).toBeLessThan(out.indexOf('</body>'));
  });

  it('keeps a link marked data-mailfleet-track="off" and one the plan leaves, and puts the pixel at the end of a fragment', () => {
    const html = `<p><a href="https://private.test/" data-mailfleet-track="off">a</a> <a href="https://skip.test/">b</a></p>`;
    const { html: out, links } = rewriteHtml(html, 'utf-8', plan);
    expect(links).toBe(0);
    expect(out.startsWith(html)).toBe(true);
    expect(out.slice(html.length)).toMatch(/^<img src="https:\/\/t\.example\.com\/o\/PIXEL"/);
  });

  it('reads a non-ASCII URL in its charset, and keeps the other bytes of a UTF-8 part (read as latin1) exactly', () => {
    const utf8 = Buffer.from('<p>Grüße <a href="https://café.test/ü">x</a> ✓</p>').toString('latin1');
    const { html: out } = rewriteHtml(utf8, 'utf-8', { link: plan.link });
    const href = /href="([^"]+)"/.exec(out)![1]!;
    expect(original(href)).toBe('https://café.test/ü');
    expect(Buffer.from(out, 'latin1').toString('utf8')).toMatch(/^<p>Grüße <a href="[^"]+">x<\/a> ✓<\/p>$/);
  });
});

describe('rewriteText', () => {
  it('rewrites http(s) URLs, not bare domains, e-mail addresses or other schemes, and not the punctuation after a URL', () => {
    const text = 'Read https://news.test/a/b?c=1. Or example.com, or ftp://files.test/x, or ask me@example.com (http://shop.test/).\r\n';
    const { text: out, links } = rewriteText(text, 'us-ascii', plan);
    expect(links).toBe(2);
    const urls = [...out.matchAll(/https:\/\/t\.example\.com\/c\/[A-Za-z0-9_-]+/g)].map((m) => original(m[0]));
    expect(urls).toEqual(['https://news.test/a/b?c=1', 'http://shop.test/']);
    expect(out.replace(/https:\/\/t\.example\.com\/c\/[A-Za-z0-9_-]+/g, 'URL')).toBe('Read URL. Or example.com, or ftp://files.test/x, or ask me@example.com (URL).\r\n');
  });
});

describe('rewriteMessage', () => {
  const pdf = Buffer.from('%PDF-1.4 http://inside-the-attachment.test/ not a link to rewrite').toString('base64');
  const htmlUtf8 = Buffer.from('<html><body><p>Café <a href="https://shop.test/">shop</a></p></body></html>').toString('base64').replace(/(.{20})/g, '$1\r\n');
  const message = Buffer.from(
    crlf([
      'From: News <news@example.com>',
      'To: reader@example.org',
      'Subject: =?iso-8859-1?q?Caf=E9?=',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="MIX"',
      '',
      'This is a multi-part message.',
      '--MIX',
      'Content-Type: multipart/alternative; boundary=ALT',
      '',
      '--ALT',
      'Content-Type: text/plain; charset=iso-8859-1',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'Caf=E9 au lait: https://shop.test/?a=3D1 and a long line that the encoder has to wrap somewhere aro=',
      'und here.',
      '--ALT',
      'Content-Type: text/html; charset=utf-8',
      'Content-Transfer-Encoding: base64',
      '',
      htmlUtf8,
      '--ALT--',
      '',
      '--MIX',
      'Content-Type: text/plain; charset=us-ascii',
      'Content-Disposition: attachment; filename="notes.txt"',
      '',
      'An attached text file with http://attached.test/ in it.',
      '--MIX',
      'Content-Type: application/pdf; name=a.pdf',
      'Content-Disposition: attachment; filename=a.pdf',
      'Content-Transfer-Encoding: base64',
      '',
      pdf,
      '--MIX--',
      'epilogue',
      '',
    ]),
    'latin1',
  );

  it('rewrites the links of the text and HTML parts only; headers, boundaries, the attachments, the preamble and the epilogue stay byte for byte', async () => {
    const { message: out, links, pixel } = await rewriteMessage(message, plan);
    expect(links).toBe(2);
    expect(pixel).toBe(true);
    const [before, ...mixed] = parts(message, 'MIX');
    const [outBefore, ...outMixed] = parts(out, 'MIX');
    expect(outBefore).toBe(before);
    // The attachments and the epilogue: byte for byte.
    expect(outMixed.slice(1)).toEqual(mixed.slice(1));
    const alt = parts(Buffer.from(outMixed[0]!, 'latin1'), 'ALT');
    const inAlt = parts(Buffer.from(mixed[0]!, 'latin1'), 'ALT');
    expect(alt).toHaveLength(inAlt.length);
    expect(alt[0]).toBe(inAlt[0]);
    expect(alt[3]).toBe(inAlt[3]);
    // The quoted-printable text: its headers as they were, its content the same but the link.
    const [qpHead, qpBody] = alt[1]!.split('\r\n\r\n') as [string, string];
    expect(qpHead).toBe(inAlt[1]!.split('\r\n\r\n')[0]);
    expect(qpBody.split('\r\n').every((l) => l.length <= 76)).toBe(true);
    const text = Buffer.from(qpBody.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('latin1');
    expect(text.replace(/https:\/\/t\.example\.com\/c\/[A-Za-z0-9_-]+/, 'URL')).toBe('Caf\u00e9 au lait: URL and a long line that the encoder has to wrap somewhere around here.\r\n');
    // The base64 HTML: decoded, the same but the link and the pixel.
    const [htmlHead, htmlBody] = alt[2]!.split('\r\n\r\n') as [string, string];
    expect(htmlHead).toBe(inAlt[2]!.split('\r\n\r\n')[0]);
    const html = Buffer.from(htmlBody, 'base64').toString('utf8');
    expect(html.replace(/href="[^"]+"/, 'HREF').replace(/<img [^>]+>/, '')).toBe('<html><body><p>Café <a HREF>shop</a></p></body></html>');
  });

  it('leaves a message with nothing to rewrite byte for byte, and a part in UTF-16 alone', async () => {
    const plain = Buffer.from(crlf(['From: a@example.com', 'Subject: hi', '', 'No links here.', '']));
    expect((await rewriteMessage(plain, { link: plan.link })).message.equals(plain)).toBe(true);
    const utf16 = Buffer.concat([Buffer.from(crlf(['From: a@example.com', 'Content-Type: text/plain; charset=utf-16le', 'Content-Transfer-Encoding: base64', '', Buffer.from('see https://x.test/', 'utf16le').toString('base64'), ''])), Buffer.alloc(0)]);
    const out = await rewriteMessage(utf16, plan);
    expect(out.links).toBe(0);
    expect(out.message.equals(utf16)).toBe(true);
  });

  it('a single-part 8bit HTML message: the bytes around the link and the pixel are kept, a line that would pass 998 characters is not rewritten', async () => {
    const body = '<html><body>Grüße <a href="https://shop.test/">x</a></body></html>\r\n';
    const msg = Buffer.from(crlf(['From: a@example.com', 'Content-Type: text/html; charset=utf-8', 'Content-Transfer-Encoding: 8bit', '', '']) + body);
    const out = await rewriteMessage(msg, plan);
    expect(out.links).toBe(1);
    const text = out.message.toString('utf8');
    expect(text.replace(/href="[^"]+"/, 'HREF').replace(/<img [^>]+>/, '')).toBe(msg.toString('utf8').replace('href="https://shop.test/"', 'HREF'));
    const long = Buffer.from(crlf(['From: a@example.com', 'Content-Type: text/html; charset=utf-8', '', '']) + `<a href="https://shop.test/">x</a>${'y'.repeat(990)}\r\n`);
    const kept = await rewriteMessage(long, plan);
    expect(kept.links).toBe(0);
    expect(kept.message.equals(long)).toBe(true);
  });
});
