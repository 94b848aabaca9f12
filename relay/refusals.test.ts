import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REFUSALS, REJECTION_REASONS, refusal, refusalReply, refusalTemplate, type RefusalName } from './refusals.js';

const NAMES = Object.keys(REFUSALS) as RefusalName[];
const entry = (name: RefusalName): { code: number; enhanced: string; reason?: string; when: string } => REFUSALS[name];

describe('the SMTP refusals table', () => {
  it('counts each refusal under a reason label of the metric', () => {
    for (const name of NAMES) {
      const { reason } = entry(name);
      if (reason !== undefined) expect(REJECTION_REASONS, name).toContain(reason);
    }
  });

  it('gives no two refusals the same reply', () => {
    const replies = NAMES.map((name) => `${entry(name).code} ${entry(name).enhanced} ${refusalTemplate(name)}`);
    expect(new Set(replies).size).toBe(replies.length);
  });

  it('pairs each reply code with an enhanced code of its class (4xx with 4.x.x) and says when it is sent', () => {
    for (const name of NAMES) {
      const { code, enhanced, when } = entry(name);
      expect(enhanced, name).toMatch(new RegExp(`^${String(code)[0]}\\.\\d{1,3}\\.\\d{1,3}$`));
      expect(when.length, name).toBeGreaterThan(15);
    }
  });

  it('words a refusal with its values, as the client reads it after the code', () => {
    const r = refusal('tooManyFromClient', { client: '192.0.2.7', limit: 3 });
    expect([r.responseCode, r.message, r.reason]).toEqual([421, '4.7.0 Too many connections from 192.0.2.7 (limit 3), try again later', 'connections']);
    expect(refusalReply('starttlsNotOffered')).toEqual([502, '5.5.1 STARTTLS is not offered on this port']);
    expect(refusalTemplate('headerTooLarge')).toBe('Message header too large: the limit is {limit} bytes');
  });

  it('has no entry the relay never answers', () => {
    const dir = path.resolve(import.meta.dirname);
    // Its subdirectories too: intake's modules live in relay/intake/.
    const sources = fs
      .readdirSync(dir, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'refusals.ts')
      .map((f) => fs.readFileSync(path.join(dir, f), 'utf8'))
      .join('\n');
    expect(NAMES.filter((name) => !sources.includes(`'${name}'`) && !sources.includes(`REFUSALS.${name}`))).toEqual([]);
  });
});
