/**
 * Generates docs/configuration.md from the config schema, so the reference cannot drift
 * from what the relay accepts (a test compares the committed file with this output).
 */
import { z } from 'zod';
import { configSchema, listenerSchema, routeSchema, senderDomainSchema } from './config.js';
import { signingKeySchema, webhookSchema } from './events/config.js';

interface JsonSchema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  minimum?: number;
  maximum?: number;
}

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (s.const !== undefined) return `\`${String(s.const)}\``;
  if (s.anyOf) {
    const kinds = s.anyOf.map((a) => a.type).join();
    if (kinds === 'number,string') return 'duration';
    if (kinds === 'integer,string') return 'size';
    return s.anyOf.map(typeOf).join(' \\| ');
  }
  if (s.type === 'array') return `list of ${s.items ? typeOf(s.items) : 'values'}`;
  if (s.type === 'integer' && s.minimum !== undefined) return `integer ≥ ${s.minimum}`;
  return Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'value');
}

function show(v: unknown): string {
  if (v === undefined) return '';
  if (Array.isArray(v) && v.length === 0) return '`[]`';
  return `\`${typeof v === 'string' ? v : JSON.stringify(v)}\``;
}

function rows(schema: JsonSchema, defaults: Record<string, unknown> | undefined, prefix: string, out: string[]): void {
  for (const [name, prop] of Object.entries(schema.properties ?? {})) {
    const path = prefix ? `${prefix}.${name}` : name;
    const required = schema.required?.includes(name) && prop.default === undefined;
    const def = defaults?.[name];
    if (prop.type === 'object' && prop.properties) {
      rows(prop, def as Record<string, unknown> | undefined, path, out);
      continue;
    }
    if (prop.type === 'array' && prop.items?.properties) {
      out.push(`| \`${path}\` | list | ${required ? 'required' : show(def)} | ${prop.description ?? ''} (fields below) |`);
      continue;
    }
    if (prop.oneOf) {
      out.push(`| \`${path}\` | one of the kinds below | ${required ? 'required' : ''} | ${prop.description ?? ''} |`);
      continue;
    }
    out.push(`| \`${path}\` | ${typeOf(prop)} | ${required ? 'required' : show(def ?? prop.default)} | ${prop.description ?? ''} |`);
  }
}

function table(title: string, intro: string, schema: z.ZodType, defaults: Record<string, unknown> | undefined, prefix = ''): string {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out = [`## ${title}`, '', intro, '', '| field | type | default | meaning |', '| --- | --- | --- | --- |'];
  rows(json, defaults, prefix, out);
  return out.join('\n');
}

export function configReference(): string {
  const minimal = configSchema.parse({ spool: { dir: '/s' }, listeners: [{ name: 'x', port: 1, tls: 'none', auth: 'none' }], delivery: { route: { type: 'file', dir: '/o' } } });
  const listener = listenerSchema.parse({ name: 'x', port: 1 });
  const routes = ['mx', 'smarthost', 'file'].map((type) => {
    const option = (routeSchema.options as z.ZodObject[]).find((o) => (o.shape.type as z.ZodLiteral).value === type)!;
    // Only the keys of this kind: the route objects refuse keys they do not know.
    const sample = { type, ...(type === 'smarthost' ? { host: 'h' } : type === 'file' ? { dir: '/o' } : {}) };
    return table(`delivery.route, type \`${type}\``, ROUTE_INTRO[type]!, option, option.parse(sample) as Record<string, unknown>, 'delivery.route');
  });
  return [
    '# Relay configuration reference',
    '',
    '<!-- Generated from relay/config.ts by `npm run docs`. Do not edit by hand: a test fails when this file and the schema differ. -->',
    '',
    'The relay reads one YAML file (`mailfleet relay --config FILE`). Relative paths are relative to that file.',
    'Durations are seconds or strings such as `90s`, `5m`, `1h`, `5d`; sizes are bytes or strings such as `512KiB`, `25MiB`, `1GiB`.',
    'An invalid file stops the relay before it listens, with each bad field named; a running relay refuses an invalid change and keeps its config.',
    'See `examples/relay.yaml` for a complete file.',
    '',
    table('Top level', 'Sections and their fields.', configSchema, minimal as unknown as Record<string, unknown>),
    '',
    table('listeners[]', 'Each SMTP listener.', listenerSchema, listener as Record<string, unknown>, 'listeners[]'),
    '',
    table('senderDomains[]', 'Domains authenticated users may send from.', senderDomainSchema, {}, 'senderDomains[]'),
    '',
    ...routes.flatMap((r) => [r, '']),
    table('events.webhooks[]', 'Each webhook that events go to (docs/events.md: the events, the signature, the retries).', webhookSchema, webhookSchema.parse({ name: 'x', url: 'https://h/', signingKeys: [{ id: 'k', secretFile: 's' }] }) as Record<string, unknown>, 'events.webhooks[]'),
    '',
    table('events.webhooks[].signingKeys[]', 'The keys a webhook\'s batches are signed with.', signingKeySchema, {}, 'events.webhooks[].signingKeys[]'),
    '',
  ].join('\n');
}

const ROUTE_INTRO: Record<string, string> = {
  mx: 'Straight to each recipient domain\'s MX hosts in preference order (A/AAAA when there is no MX; a null MX bounces at once), with opportunistic STARTTLS.',
  smarthost: 'Everything through one upstream. Amazon SES: `email-smtp.REGION.amazonaws.com`, port 587, `starttls`, SMTP credentials; SendGrid: `smtp.sendgrid.net`, user `apikey`; Mailgun: `smtp.mailgun.org`; Microsoft 365: `smtp.office365.com`, port 587, with `oauth2` (Basic authentication ends in December 2026); Google Workspace: `smtp.gmail.com` with an app password or `oauth2`. See docs/providers.md.',
  file: 'Development: each delivered message is written as an .eml file, like Mailpit or MailHog.',
};
