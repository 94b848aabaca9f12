/**
 * Label and field selectors as the API server parses them from `labelSelector` and `fieldSelector`
 * (k8s.io/apimachinery/pkg/labels and pkg/fields), plus the string form Scale.status.selector uses.
 */
import { errors } from './status.js';

type LabelOperator = '=' | '!=' | 'in' | 'notin' | 'exists' | '!' | 'gt' | 'lt';

export interface LabelRequirement {
  key: string;
  operator: LabelOperator;
  values: string[];
}

const NAME_CHARS = /[A-Za-z0-9._\-/]/;

class LabelSelectorParser {
  private pos = 0;
  constructor(private readonly text: string) {}

  parse(): LabelRequirement[] {
    const requirements: LabelRequirement[] = [];
    this.skipSpace();
    if (this.atEnd()) return requirements;
    for (;;) {
      requirements.push(this.requirement());
      this.skipSpace();
      if (this.atEnd()) return requirements;
      this.expect(',');
    }
  }

  private requirement(): LabelRequirement {
    this.skipSpace();
    if (this.peek() === '!') {
      this.pos++;
      return { key: this.identifier('after \'!\''), operator: '!', values: [] };
    }
    const key = this.identifier('as a key');
    this.skipSpace();
    if (this.atEnd() || this.peek() === ',') return { key, operator: 'exists', values: [] };
    for (const [token, operator] of [['==', '='], ['!=', '!='], ['=', '='], ['>', 'gt'], ['<', 'lt']] as const) {
      if (this.text.startsWith(token, this.pos)) {
        this.pos += token.length;
        this.skipSpace();
        const value = this.word();
        if ((operator === 'gt' || operator === 'lt') && !/^-?\d+$/.test(value)) {
          this.fail(`for 'Gt', 'Lt' operators, the value must be an integer`);
        }
        return { key, operator, values: [value] };
      }
    }
    const word = this.word();
    if (word !== 'in' && word !== 'notin') this.fail(`found '${word}', expected: in, notin, =, ==, !=, gt, lt`);
    this.skipSpace();
    this.expect('(');
    const values: string[] = [];
    for (;;) {
      this.skipSpace();
      values.push(this.word());
      this.skipSpace();
      if (this.peek() === ')') break;
      this.expect(',');
    }
    this.pos++;
    if (values.length === 1 && values[0] === '') this.fail(`for 'in', 'notin' operators, values set can't be empty`);
    return { key, operator: word, values };
  }

  private identifier(where: string): string {
    const word = this.word();
    if (!word) this.fail(`found '${this.peek() ?? ''}', expected: identifier ${where}`);
    return word;
  }

  private word(): string {
    const start = this.pos;
    while (!this.atEnd() && NAME_CHARS.test(this.peek() as string)) this.pos++;
    return this.text.slice(start, this.pos);
  }

  private expect(char: string): void {
    if (this.peek() === char) {
      this.pos++;
      return;
    }
    // The lexer's next token: a whole identifier, or one character.
    const start = this.pos;
    const literal = this.word() || (this.peek() ?? '');
    this.pos = start;
    // apimachinery words this one without the comma the others have.
    this.fail(char === '(' ? `found '${literal}' expected: '('` : `found '${literal}', expected: '${char}'`);
  }

  private skipSpace(): void {
    while (this.peek() === ' ') this.pos++;
  }

  private peek(): string | undefined {
    return this.text[this.pos];
  }

  private atEnd(): boolean {
    return this.pos >= this.text.length;
  }

  private fail(why: string): never {
    throw errors.badRequest(`unable to parse requirement: ${why}`);
  }
}

/** Parses `a=b,c!=d,e in (f,g),!h,i`; a malformed selector is a 400 BadRequest, as on a cluster. */
export function parseLabelSelector(text: string): LabelRequirement[] {
  return new LabelSelectorParser(text).parse();
}

export function matchesLabels(requirements: LabelRequirement[], labels: Record<string, string> = {}): boolean {
  return requirements.every(({ key, operator, values }) => {
    const has = Object.hasOwn(labels, key);
    const value = labels[key];
    switch (operator) {
      case '=':
        return has && value === values[0];
      case '!=':
        return !has || value !== values[0];
      case 'in':
        return has && values.includes(value as string);
      case 'notin':
        return !has || !values.includes(value as string);
      case 'exists':
        return has;
      case '!':
        return !has;
      case 'gt':
      case 'lt': {
        const n = Number(value);
        if (!has || !Number.isInteger(n)) return false;
        return operator === 'gt' ? n > Number(values[0]) : n < Number(values[0]);
      }
    }
  });
}

export interface LabelSelectorObject {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/** metav1.FormatLabelSelector: the string a Scale's status.selector carries for a Deployment. */
export function formatLabelSelector(selector: LabelSelectorObject): string {
  const parts: [string, string][] = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => [k, `${k}=${v}`]);
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const sorted = [...values].sort().join(',');
    const text = { In: `${key} in (${sorted})`, NotIn: `${key} notin (${sorted})`, Exists: key, DoesNotExist: `!${key}` }[operator];
    if (text) parts.push([key, text]);
  }
  return parts.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, text]) => text).join(',');
}

export interface FieldRequirement {
  field: string;
  operator: '=' | '!=';
  value: string;
}

/** Parses `metadata.name=x,spec.nodeName!=y`; backslash escapes `,` `=` and `\` in values. */
export function parseFieldSelector(text: string): FieldRequirement[] {
  if (!text.trim()) return [];
  const terms: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string;
    if (char === '\\' && i + 1 < text.length) {
      current += char + (text[++i] as string);
    } else if (char === ',') {
      terms.push(current);
      current = '';
    } else {
      current += char;
    }
  }
  terms.push(current);
  return terms.map((term) => {
    const match = /^([^=!]+?)\s*(==|!=|=)\s*(.*)$/.exec(term.trim());
    if (!match) throw errors.badRequest(`invalid selector: '${text}'; can't understand '${term}'`);
    const [, field, operator, raw] = match as unknown as [string, string, string, string];
    return { field, operator: operator === '!=' ? '!=' : '=', value: raw.replace(/\\(.)/g, '$1') };
  });
}

export function matchesFields(requirements: FieldRequirement[], fields: Record<string, string | undefined>): boolean {
  return requirements.every(({ field, operator, value }) => (operator === '=' ? fields[field] === value : fields[field] !== value));
}
