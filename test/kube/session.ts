/**
 * The emulator's own tests share this: a fresh emulator per test (useEmulator), the clients a
 * controller would drive it with, and the patch content types. `emulator` and `kc` are live
 * bindings: they name the emulator of the running test, also after a test restarts it with start().
 */
import { CustomObjectsApi, KubernetesObjectApi, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeEach } from 'vitest';
import { startKubeEmulator, type KubeEmulator, type KubeObject } from './emulator.js';
import { mailRelay, policyCrd, relayCrd, relayGroup } from './fixtures.js';

export let emulator: KubeEmulator;
export let kc: KubeConfig;

/** (Re)starts the emulator with the test CRDs and the options given. */
export async function start(options: Parameters<typeof startKubeEmulator>[0] = {}): Promise<void> {
  await emulator?.stop();
  emulator = await startKubeEmulator({ crds: [relayCrd, policyCrd], ...options });
  kc = emulator.kubeConfig();
}

/** A fresh emulator before each test of the calling file, stopped after it. */
export function useEmulator(): void {
  beforeEach(() => start());
  afterEach(() => emulator.stop());
}

export const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
export const strategic = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);
export const apply = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

export function objects(): KubernetesObjectApi {
  return KubernetesObjectApi.makeApiClient(kc);
}

export function customObjects(): CustomObjectsApi {
  return kc.makeApiClient(CustomObjectsApi);
}

/** A POST of raw JSON (what the operator's client sends): the status code and the parsed body. */
export async function postJson(path: string, body: unknown): Promise<{ code: number; body: Record<string, unknown> }> {
  const res = await fetch(`${emulator.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return { code: res.status, body: (await res.json()) as Record<string, unknown> };
}

export async function createRelay(name: string, spec?: Record<string, unknown>): Promise<KubeObject> {
  return (await customObjects().createNamespacedCustomObject({ ...relayGroup, namespace: 'default', body: mailRelay(name, spec) })) as KubeObject;
}
