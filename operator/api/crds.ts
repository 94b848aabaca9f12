/**
 * CustomResourceDefinitions generated from the zod schemas in ./v1alpha1.ts: the files in
 * crds/ and charts/mailfleet/crds/ are this output (`npm run crds` writes them; a test fails
 * when they differ), so the API server validates exactly what the operator expects.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { GROUP, mailRelaySpecSchema, mailRelayStatusSchema, senderDomainSpecSchema, senderDomainStatusSchema, VERSION } from './v1alpha1.js';

type Schema = Record<string, unknown>;

/**
 * JSON Schema (as zod writes it) to a structural OpenAPI v3 schema (as Kubernetes wants it):
 * no $schema or propertyNames, no `additionalProperties: false` (the API server prunes unknown
 * fields instead), no JavaScript's safe-integer bounds, int-or-string where a field takes both.
 */
export function structural(schema: Schema): Schema {
  const out: Schema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === '$schema' || key === 'propertyNames') continue;
    if (key === 'additionalProperties' && (value === false || schema['x-kubernetes-preserve-unknown-fields'])) continue;
    if ((key === 'maximum' || key === 'minimum') && Math.abs(value as number) === Number.MAX_SAFE_INTEGER) continue;
    if (key === 'type' && Array.isArray(value)) {
      out['x-kubernetes-int-or-string'] = true;
      continue;
    }
    if (key === 'properties') out[key] = Object.fromEntries(Object.entries(value as Record<string, Schema>).map(([k, v]) => [k, structural(v)]));
    else if ((key === 'items' || key === 'additionalProperties') && typeof value === 'object') out[key] = structural(value as Schema);
    else out[key] = value;
  }
  return out;
}

const openApi = (schema: z.ZodType) => structural(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Schema);

interface CrdShape {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  spec: z.ZodType;
  status: z.ZodType;
  scale: boolean;
  columns: { name: string; type: string; jsonPath: string; description?: string; priority?: number }[];
}

const condition = (type: string) => `.status.conditions[?(@.type=="${type}")].status`;

const SHAPES: CrdShape[] = [
  {
    kind: 'MailRelay',
    plural: 'mailrelays',
    singular: 'mailrelay',
    shortNames: ['mr'],
    spec: mailRelaySpecSchema,
    status: mailRelayStatusSchema,
    scale: true,
    columns: [
      { name: 'Ready', type: 'string', jsonPath: condition('Ready') },
      { name: 'Replicas', type: 'integer', jsonPath: '.status.replicas' },
      { name: 'Queue', type: 'string', jsonPath: '.status.queueSummary' },
      { name: 'Endpoint', type: 'string', jsonPath: '.status.endpoint', priority: 1 },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  },
  {
    kind: 'SenderDomain',
    plural: 'senderdomains',
    singular: 'senderdomain',
    shortNames: ['sd'],
    spec: senderDomainSpecSchema,
    status: senderDomainStatusSchema,
    scale: false,
    columns: [
      { name: 'Domain', type: 'string', jsonPath: '.spec.domain' },
      { name: 'Selector', type: 'string', jsonPath: '.status.activeSelectors' },
      { name: 'DNS', type: 'string', jsonPath: condition('DNSVerified') },
      { name: 'Ready', type: 'string', jsonPath: condition('Ready') },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
  },
];

export function customResourceDefinitions(): Schema[] {
  return SHAPES.map((s) => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${s.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      names: { kind: s.kind, listKind: `${s.kind}List`, plural: s.plural, singular: s.singular, shortNames: s.shortNames, categories: ['mailfleet'] },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', required: ['spec'], properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, spec: openApi(s.spec), status: openApi(s.status) } } },
          subresources: { status: {}, ...(s.scale ? { scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' } } : {}) },
          additionalPrinterColumns: s.columns,
        },
      ],
    },
  }));
}

export const CRD_DIRS = ['crds', 'charts/mailfleet/crds'];

/** One YAML file per CRD, named after it. */
export function crdFiles(): Map<string, string> {
  const header = '# Generated from operator/api/v1alpha1.ts by `npm run crds`. Do not edit.\n';
  return new Map(customResourceDefinitions().map((crd) => [`${(crd.metadata as { name: string }).name}.yaml`, header + YAML.stringify(crd, { lineWidth: 0 })]));
}

export function writeCrds(root: string): void {
  for (const dir of CRD_DIRS) {
    fs.mkdirSync(path.join(root, dir), { recursive: true });
    for (const [name, text] of crdFiles()) fs.writeFileSync(path.join(root, dir, name), text);
  }
}
