import fs from 'node:fs';
import path from 'node:path';
import { RE2JS } from 're2js';
import { describe, expect, it } from 'vitest';
import { CRD_DIRS, crdFiles, customResourceDefinitions } from './crds.js';
import { mailRelaySpecSchema, senderDomainSpecSchema } from './v1alpha1.js';

type Node = Record<string, unknown>;

/** Paths of schema nodes that a structural schema would refuse (no type, or a union). */
function nonStructural(node: Node, at: string): string[] {
  const problems: string[] = [];
  const typed = typeof node.type === 'string' || node['x-kubernetes-int-or-string'] === true || node['x-kubernetes-preserve-unknown-fields'] === true;
  if (!typed) problems.push(`${at}: no type`);
  for (const k of ['anyOf', 'oneOf', 'allOf', 'not', '$ref', 'propertyNames']) if (k in node) problems.push(`${at}: ${k}`);
  if (node.additionalProperties === false) problems.push(`${at}: additionalProperties false`);
  for (const [k, v] of Object.entries((node.properties as Record<string, Node>) ?? {})) problems.push(...nonStructural(v, `${at}.${k}`));
  if (node.items) problems.push(...nonStructural(node.items as Node, `${at}[]`));
  if (typeof node.additionalProperties === 'object') problems.push(...nonStructural(node.additionalProperties as Node, `${at}{}`));
  return problems;
}

/** Every `pattern` in a schema, with its path. */
function patterns(node: Node, at: string): { at: string; pattern: string }[] {
  const found = typeof node.pattern === 'string' ? [{ at, pattern: node.pattern }] : [];
  for (const [k, v] of Object.entries((node.properties as Record<string, Node>) ?? {})) found.push(...patterns(v, `${at}.${k}`));
  if (node.items) found.push(...patterns(node.items as Node, `${at}[]`));
  if (typeof node.additionalProperties === 'object') found.push(...patterns(node.additionalProperties as Node, `${at}{}`));
  return found;
}

describe('CustomResourceDefinitions', () => {
  it('crds/ and the chart hold exactly what operator/api generates (run `npm run crds` after a change)', () => {
    for (const dir of CRD_DIRS) {
      const files = fs.readdirSync(path.resolve(dir)).filter((f) => f.endsWith('.yaml')).sort();
      expect(files, dir).toEqual([...crdFiles().keys()].sort());
      for (const [name, text] of crdFiles()) expect(fs.readFileSync(path.resolve(dir, name), 'utf8'), `${dir}/${name}`).toBe(text);
    }
  });

  it('schemas are structural, with the status and scale subresources and printer columns', () => {
    for (const crd of customResourceDefinitions()) {
      const version = (crd.spec as { versions: Node[] }).versions[0]!;
      const schema = (version.schema as { openAPIV3Schema: Node }).openAPIV3Schema;
      expect(nonStructural(schema, (crd.metadata as { name: string }).name)).toEqual([]);
      expect(version.subresources).toHaveProperty('status');
    }
    const [relay, domain] = customResourceDefinitions();
    const relayVersion = (relay!.spec as { versions: Node[] }).versions[0]!;
    expect(relayVersion.subresources).toEqual({ status: {}, scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' } });
    expect((relayVersion.additionalPrinterColumns as { name: string }[]).map((c) => c.name)).toEqual(['Ready', 'Replicas', 'Queue', 'Endpoint', 'Age']);
    expect(((domain!.spec as { versions: Node[] }).versions[0]!.additionalPrinterColumns as { name: string }[]).map((c) => c.name)).toEqual(['Domain', 'Selector', 'DNS', 'Ready', 'Age']);
  });

  // The API server compiles patterns with Go's regexp (RE2): no lookaround, no backreferences.
  // A CRD with one it cannot compile is refused at install (helm install fails).
  it('every pattern is one the API server compiles (RE2 syntax), and agrees with the zod schema on sample values', () => {
    const refused: string[] = [];
    for (const crd of customResourceDefinitions()) {
      const schema = ((crd.spec as { versions: Node[] }).versions[0]!.schema as { openAPIV3Schema: Node }).openAPIV3Schema;
      for (const { at, pattern } of patterns(schema, (crd.metadata as { name: string }).name)) {
        try {
          RE2JS.compile(pattern);
        } catch (err) {
          refused.push(`${at}: ${(err as Error).message}`);
        }
      }
    }
    expect(refused).toEqual([]);
    // The sender domain's name: the case the lookahead used to cover, and the ordinary ones.
    const domainPattern = RE2JS.compile(patterns(((customResourceDefinitions()[1]!.spec as { versions: Node[] }).versions[0]!.schema as { openAPIV3Schema: Node }).openAPIV3Schema, '').find((p) => p.at === '.spec.domain')!.pattern);
    for (const [domain, ok] of [['example.com', true], ['mail.example.co.uk', true], ['x-1.example', true], ['-bad.example.com', false], ['bad-.example.com', false], ['example', false], ['Example.com', false], ['a..b', false]] as const) {
      expect(domainPattern.matches(domain), domain).toBe(ok);
      expect(senderDomainSpecSchema.safeParse({ domain }).success, `zod: ${domain}`).toBe(ok);
    }
  });

  it('the zod schemas take what a user writes and refuse what the CRD refuses', () => {
    expect(senderDomainSpecSchema.parse({ domain: 'example.com' })).toMatchObject({ dkim: { keyType: 'both', selectorPrefix: 'mailfleet', rotation: { overlap: '7d' } }, dmarc: { policy: 'none' } });
    expect(mailRelaySpecSchema.parse({})).toMatchObject({ replicas: 2, listeners: [{ port: 587, tls: 'starttls', auth: 'required' }], delivery: { route: 'mx' } });
    const bad = mailRelaySpecSchema.safeParse({ replicas: -1, retry: { lifetime: 'forever' } });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues.map((i) => i.path.join('.')).sort()).toEqual(['replicas', 'retry.lifetime']);
  });
});
