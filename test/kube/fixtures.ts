/**
 * Shared pieces of the emulator's tests: a MailRelay-like CRD exercising every schema keyword the
 * emulator validates, a cluster-scoped CRD, and helpers to catch ApiExceptions, collect watch
 * events and wait for conditions.
 */
import { ApiException, Watch, type KubeConfig, type KubernetesObject, type V1Deployment } from '@kubernetes/client-node';
import type { KubeObject } from './json.js';

export const relayCrd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'mailrelays.mailfleet.io' },
  spec: {
    group: 'mailfleet.io',
    scope: 'Namespaced',
    names: { kind: 'MailRelay', plural: 'mailrelays', singular: 'mailrelay', listKind: 'MailRelayList', shortNames: ['mr'] },
    versions: [
      {
        name: 'v1alpha1',
        served: true,
        storage: true,
        subresources: { status: {}, scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' } },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              apiVersion: { type: 'string' },
              kind: { type: 'string' },
              metadata: { type: 'object' },
              spec: {
                type: 'object',
                required: ['domain'],
                properties: {
                  domain: { type: 'string', pattern: '^[a-z0-9.-]+$', maxLength: 64 },
                  replicas: { type: 'integer', minimum: 0, maximum: 50, default: 2 },
                  mode: { type: 'string', enum: ['mx', 'smarthost'], default: 'mx' },
                  ports: {
                    type: 'array',
                    maxItems: 3,
                    'x-kubernetes-list-type': 'map',
                    'x-kubernetes-list-map-keys': ['name'],
                    items: { type: 'object', required: ['name', 'port'], properties: { name: { type: 'string' }, port: { type: 'integer', minimum: 1, maximum: 65535 } } },
                  },
                  tags: { type: 'array', minItems: 1, 'x-kubernetes-list-type': 'set', items: { type: 'string', minLength: 1 } },
                  labels: { type: 'object', additionalProperties: { type: 'string' } },
                  limits: { type: 'object', default: {}, properties: { perMinute: { type: 'integer', default: 600, exclusiveMinimum: true, minimum: 0 }, burst: { type: 'integer' } } },
                  extra: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
                  note: { type: 'string', nullable: true },
                  strict: { type: 'object', additionalProperties: false, 'x-kubernetes-preserve-unknown-fields': true, properties: { known: { type: 'boolean' } } },
                  window: { type: 'object', properties: { min: { type: 'integer' }, max: { type: 'integer' } }, 'x-kubernetes-validations': [{ rule: 'self.min <= self.max' }] },
                },
              },
              status: {
                type: 'object',
                properties: {
                  replicas: { type: 'integer' },
                  selector: { type: 'string' },
                  phase: { type: 'string' },
                  conditions: {
                    type: 'array',
                    'x-kubernetes-list-type': 'map',
                    'x-kubernetes-list-map-keys': ['type'],
                    items: {
                      type: 'object',
                      required: ['type', 'status'],
                      properties: {
                        type: { type: 'string' },
                        status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
                        observedGeneration: { type: 'integer' },
                        reason: { type: 'string' },
                        message: { type: 'string' },
                        lastTransitionTime: { type: 'string' },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    ],
  },
};

export const relayGroup = { group: 'mailfleet.io', version: 'v1alpha1', plural: 'mailrelays' };

/** A cluster-scoped kind without subresources. */
export const policyCrd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'fleetpolicies.mailfleet.io' },
  spec: {
    group: 'mailfleet.io',
    scope: 'Cluster',
    names: { kind: 'FleetPolicy', plural: 'fleetpolicies', singular: 'fleetpolicy' },
    versions: [{ name: 'v1alpha1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } } } }],
  },
};

/** A manifest as client-node's generic KubernetesObjectApi takes it. */
export type Manifest = KubernetesObject & { spec?: Record<string, unknown> };

export function mailRelay(name: string, spec: Record<string, unknown> = { domain: 'example.test' }, metadata: Record<string, unknown> = {}): Manifest {
  return { apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', metadata: { name, namespace: 'default', ...metadata }, spec };
}

export function deployment(name: string, replicas = 1): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'default', labels: { app: name } },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'relay', image: 'mailfleet:1.0', ports: [{ containerPort: 25 }] }] } },
    },
  };
}

export interface StatusBody {
  kind: string;
  status: string;
  message: string;
  reason: string;
  code: number;
  details?: { name?: string; group?: string; kind?: string; causes?: { reason: string; message: string; field?: string }[]; retryAfterSeconds?: number };
}

/** The HTTP code, Status body and headers of a request that must fail. */
export async function failure(request: Promise<unknown>): Promise<{ code: number; status: StatusBody; headers: Record<string, string> }> {
  try {
    await request;
  } catch (err) {
    if (!(err instanceof ApiException)) throw err;
    return { code: err.code, status: JSON.parse(err.body as string) as StatusBody, headers: err.headers };
  }
  throw new Error('the request succeeded; it should have failed');
}

export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export interface WatchEvent {
  type: string;
  object: KubeObject & { code?: number; reason?: string };
}

/** A client-node Watch whose events land in `events`; `ended` resolves with the error passed to `done`. */
export async function watchEvents(kc: KubeConfig, path: string, query: Record<string, string | boolean | number> = {}) {
  const events: WatchEvent[] = [];
  let finish: (err: unknown) => void = () => undefined;
  const ended = new Promise<unknown>((resolve) => (finish = resolve));
  const controller = await new Watch(kc).watch(path, query, (type, object: KubeObject) => events.push({ type, object }), (err) => finish(err));
  return {
    events,
    ended,
    stop: () => controller.abort(),
    next: (count: number) => waitFor(() => events.length >= count && events.slice(0, count), `${count} watch events on ${path}`),
  };
}
