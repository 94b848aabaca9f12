/**
 * Legacy discovery documents (/api, /api/v1, /apis, /apis/GROUP, /apis/GROUP/VERSION), which
 * KubernetesObjectApi reads to map apiVersion and kind to a resource path. Built from the
 * resource registry, so a CRD's resources appear as soon as it is created and go when it is.
 */
import type { ResourceDef, ResourceRegistry } from './resources.js';

const OBJECT_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
const SUBRESOURCE_VERBS = ['get', 'patch', 'update'];

function groupVersion(group: string, version: string): string {
  return group ? `${group}/${version}` : version;
}

export function apiVersions(): Record<string, unknown> {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] };
}

function groupEntry(name: string, versions: string[]): Record<string, unknown> {
  const entries = versions.map((version) => ({ groupVersion: groupVersion(name, version), version }));
  return { name, versions: entries, preferredVersion: entries[0] };
}

export function apiGroupList(resources: ResourceRegistry): Record<string, unknown> {
  const groups = [...resources.groups()].filter(([name]) => name !== '').map(([name, versions]) => groupEntry(name, versions));
  return { kind: 'APIGroupList', apiVersion: 'v1', groups };
}

export function apiGroup(resources: ResourceRegistry, name: string): Record<string, unknown> | undefined {
  const versions = resources.groups().get(name);
  return versions && { kind: 'APIGroup', apiVersion: 'v1', ...groupEntry(name, versions) };
}

function resourceEntries(def: ResourceDef): Record<string, unknown>[] {
  const entries: Record<string, unknown>[] = [
    {
      name: def.plural,
      singularName: def.singular,
      namespaced: def.namespaced,
      kind: def.kind,
      verbs: def.plural === 'namespaces' ? OBJECT_VERBS.filter((v) => v !== 'deletecollection') : OBJECT_VERBS,
      ...(def.shortNames.length ? { shortNames: def.shortNames } : {}),
      ...(def.categories.length ? { categories: def.categories } : {}),
    },
  ];
  if (def.statusSubresource) entries.push({ name: `${def.plural}/status`, singularName: '', namespaced: def.namespaced, kind: def.kind, verbs: SUBRESOURCE_VERBS });
  if (def.scale) {
    entries.push({ name: `${def.plural}/scale`, singularName: '', namespaced: def.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: SUBRESOURCE_VERBS });
  }
  return entries;
}

export function apiResourceList(resources: ResourceRegistry, group: string, version: string): Record<string, unknown> | undefined {
  if (!resources.servesGroupVersion(group, version)) return undefined;
  const defs = resources.all().filter((d) => d.group === group && d.version === version);
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: groupVersion(group, version), resources: defs.flatMap(resourceEntries) };
}
