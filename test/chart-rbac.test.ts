// The Helm chart's RBAC through the real helm v4: exactly the operator's grants, no wildcards, bound to its ServiceAccount, per watched namespace or cluster-wide.
import { expect, it } from 'vitest';
import YAML from 'yaml';
import { describeHelm, runHelm } from './peers/helm.js';
import { CHART, CUSTOM_VALUES, customValuesFile, expectAllValid, find, FULLNAME, kindOf, NS, type Obj, one, RELEASE, template, useCustomValues } from './support/chart.js';

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

/** The grants the operator needs, exactly (the list). Widening the chart fails a test. */
const NAMESPACED_GRANTS: Record<string, string[]> = {
  'mailfleet.io/mailrelays': ['get', 'list', 'watch', 'update', 'patch'],
  'mailfleet.io/senderdomains': ['get', 'list', 'watch', 'update', 'patch'],
  'mailfleet.io/mailrelays/status': ['get', 'update', 'patch'],
  'mailfleet.io/senderdomains/status': ['get', 'update', 'patch'],
  'mailfleet.io/mailrelays/finalizers': ['update'],
  'mailfleet.io/senderdomains/finalizers': ['update'],
  'core/configmaps': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'core/secrets': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'core/services': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'core/pods': ['get', 'list', 'watch', 'patch'],
  'core/endpoints': ['get', 'list', 'watch'],
  'core/events': ['create', 'patch'],
  'events.k8s.io/events': ['create', 'patch'],
  'apps/deployments': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'policy/poddisruptionbudgets': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'networking.k8s.io/ingresses': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'monitoring.coreos.com/servicemonitors': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
  'externaldns.k8s.io/dnsendpoints': ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
};
const LEASE_GRANTS = { 'coordination.k8s.io/leases': ['get', 'create', 'update'] };

// ---------------------------------------------------------------------------------------
// RBAC as a flat list of grants
// ---------------------------------------------------------------------------------------

/** "group/resource" -> verbs, merged over the rules of one role. */
function grants(rules: Rule[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const r of rules) {
    for (const g of r.apiGroups ?? []) {
      for (const res of r.resources ?? []) {
        const key = `${g === '' ? 'core' : g}/${res}`;
        out[key] = [...new Set([...(out[key] ?? []), ...(r.verbs ?? [])])];
      }
    }
  }
  return out;
}
const sortedGrants = (g: Record<string, string[]>) =>
  Object.fromEntries(
    Object.keys(g)
      .sort()
      .map((k) => [k, [...g[k]!].sort()]),
  );

function expectNoWildcards(objs: Obj[]): void {
  for (const role of objs.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole')) {
    expect(role.aggregationRule, `${role.kind} ${role.metadata.name} aggregates other roles`).toBeUndefined();
    for (const rule of role.rules as Rule[]) {
      const where = `${role.kind} ${role.metadata.name}: ${JSON.stringify(rule)}`;
      for (const field of ['verbs', 'resources', 'apiGroups', 'resourceNames'] as const) {
        for (const v of rule[field] ?? []) expect(v.includes('*'), `${where} has a wildcard in ${field}`).toBe(false);
      }
      expect(rule.nonResourceURLs, where).toBeUndefined();
      // Verbs that let a holder grant itself more than it has.
      for (const v of rule.verbs ?? []) expect(['escalate', 'bind', 'impersonate'], where).not.toContain(v);
    }
  }
}

/** Every binding points at a rendered role and at the operator's ServiceAccount only. */
function expectBindingsToServiceAccount(objs: Obj[], serviceAccount: string): void {
  const bindings = objs.filter((o) => o.kind === 'RoleBinding' || o.kind === 'ClusterRoleBinding');
  expect(bindings.length).toBeGreaterThan(0);
  for (const b of bindings) {
    expect(b.subjects, `${b.kind} ${b.metadata.name}`).toEqual([{ kind: 'ServiceAccount', name: serviceAccount, namespace: NS }]);
    const target = objs.filter((o) => o.kind === b.roleRef.kind && o.metadata.name === b.roleRef.name && (o.kind === 'ClusterRole' || o.metadata.namespace === b.metadata.namespace));
    expect(target, `${b.kind} ${b.metadata.namespace ?? ''}/${b.metadata.name} -> ${b.roleRef.kind} ${b.roleRef.name}`).toHaveLength(1);
    expect(b.roleRef.apiGroup).toBe('rbac.authorization.k8s.io');
  }
}

describeHelm('Helm chart charts/mailfleet (real helm, kubernetes-models validation)', () => {
  useCustomValues();

  it('grants exactly the listed permissions, no wildcards, cluster-wide when watchNamespaces is empty', async () => {
    const objs = await template();
    expectNoWildcards(objs);
    expectBindingsToServiceAccount(objs, FULLNAME);
    const clusterRoles = find(objs, 'ClusterRole');
    // Optional APIs are found by discovery, which needs no grant: no CustomResourceDefinition reader.
    expect(clusterRoles.map((r) => r.metadata.name).sort()).toEqual([`${FULLNAME}-${NS}-manager`]);
    expect(sortedGrants(grants(one(objs, 'ClusterRole', `${FULLNAME}-${NS}-manager`).rules))).toEqual(sortedGrants(NAMESPACED_GRANTS));
    expect(find(objs, 'ClusterRoleBinding').map((b) => b.roleRef.name).sort()).toEqual(clusterRoles.map((r) => r.metadata.name).sort());
    // Leader election: a Role in the release namespace, and leases nowhere else.
    const roles = find(objs, 'Role');
    expect(roles.map((r) => `${r.metadata.namespace}/${r.metadata.name}`)).toEqual([`${NS}/${FULLNAME}-leader-election`]);
    expect(grants(roles[0]!.rules)).toEqual(LEASE_GRANTS);
    for (const r of clusterRoles) expect(Object.keys(grants(r.rules))).not.toContain('coordination.k8s.io/leases');
    expect(one(objs, 'RoleBinding').metadata.namespace).toBe(NS);
  });

  it('catches a widened grant (the exact-grant check can fail)', () => {
    const widened = grants([...(YAML.parse('- {apiGroups: [""], resources: [secrets], verbs: [get, list, watch, create, update, patch, delete, deletecollection]}') as Rule[])]);
    expect(() => expect(widened['core/secrets']!.sort()).toEqual(NAMESPACED_GRANTS['core/secrets']!.slice().sort())).toThrow();
    expect(() => expectNoWildcards([{ kind: 'ClusterRole', metadata: { name: 'x' }, rules: [{ apiGroups: ['*'], resources: ['pods'], verbs: ['get'] }] }])).toThrow(/wildcard in apiGroups/);
  });

  it('with non-default values: Roles per watched namespace, no leader election, a ServiceMonitor, no PDB', async () => {
    const objs = await template(['--values', customValuesFile]);
    expectAllValid(objs);
    expectNoWildcards(objs);
    expectBindingsToServiceAccount(objs, 'mail-operator');
    expect(objs.map(kindOf).sort()).toEqual(['Deployment', 'Role', 'Role', 'RoleBinding', 'RoleBinding', 'Service', 'ServiceAccount', 'ServiceMonitor']);

    // RBAC: the namespaced rules in a and b only, and nothing cluster-wide.
    const roles = find(objs, 'Role');
    expect(roles.map((r) => `${r.metadata.namespace}/${r.metadata.name}`).sort()).toEqual([`a/${FULLNAME}-manager`, `b/${FULLNAME}-manager`]);
    for (const r of roles) expect(sortedGrants(grants(r.rules)), r.metadata.namespace).toEqual(sortedGrants(NAMESPACED_GRANTS));
    expect(find(objs, 'RoleBinding').map((b) => `${b.metadata.namespace}/${b.roleRef.kind}/${b.roleRef.name}`).sort()).toEqual([`a/Role/${FULLNAME}-manager`, `b/Role/${FULLNAME}-manager`]);

    // The Deployment follows the values.
    const d = one(objs, 'Deployment');
    const pod = d.spec.template.spec;
    const c = pod.containers[0];
    expect(d.spec.replicas).toBe(1);
    expect(c.args).toEqual(['operator', '--namespaces=a,b', '--no-leader-elect', '--metrics-port=9100', '--health-port=9101', '--log-level=debug']);
    expect(c.image).toBe('registry.example.test/mail/mailfleet:9.9.9');
    expect(c.imagePullPolicy).toBe('Always');
    expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(c.env.find((e: Obj) => e.name === 'MAILFLEET_RELAY_IMAGE')).toEqual({ name: 'MAILFLEET_RELAY_IMAGE', value: 'registry.example.test/mail/relay:9.9.9' });
    expect(c.resources).toEqual(CUSTOM_VALUES.resources);
    expect(c.ports.map((p: Obj) => p.containerPort)).toEqual([9100, 9101]);
    expect(pod.serviceAccountName).toBe('mail-operator');
    expect(pod.nodeSelector).toEqual(CUSTOM_VALUES.nodeSelector);
    expect(pod.tolerations).toEqual(CUSTOM_VALUES.tolerations);
    expect(pod.affinity).toEqual(CUSTOM_VALUES.affinity);
    expect(pod.priorityClassName).toBe('system-cluster-critical');
    expect(d.spec.template.metadata.annotations).toEqual({ 'example.test/note': 'hi' });
    expect(d.spec.template.metadata.labels.team).toBe('mail');
    expect(pod.topologySpreadConstraints.map((t: Obj) => [t.topologyKey, t.maxSkew, t.whenUnsatisfiable])).toEqual([
      ['topology.kubernetes.io/zone', 2, 'DoNotSchedule'],
      ['kubernetes.io/hostname', 2, 'DoNotSchedule'],
    ]);
    // Still hardened with other values.
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(pod.securityContext.runAsNonRoot).toBe(true);

    const sa = one(objs, 'ServiceAccount');
    expect(sa.metadata.name).toBe('mail-operator');
    expect(sa.metadata.annotations).toEqual(CUSTOM_VALUES.serviceAccount.annotations);

    // ServiceMonitor: scrapes the metrics Service's named port.
    const sm = one(objs, 'ServiceMonitor');
    const svc = one(objs, 'Service');
    expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(sm.metadata.labels.release).toBe('kube-prometheus-stack');
    expect(sm.spec.namespaceSelector).toEqual({ matchNames: [NS] });
    expect(svc.metadata.labels).toMatchObject(sm.spec.selector.matchLabels);
    expect(sm.spec.endpoints).toEqual([{ port: 'metrics', path: '/metrics', interval: '15s', honorLabels: true }]);
    expect(svc.spec.ports).toEqual([{ name: 'metrics', port: 9100, targetPort: 'metrics', protocol: 'TCP' }]);
  });

  it('renders no RBAC with rbac.create=false and uses a named existing ServiceAccount', async () => {
    const objs = await template(['--set', 'rbac.create=false', '--set', 'serviceAccount.create=false', '--set', 'serviceAccount.name=existing-sa']);
    expect(objs.filter((o) => /Role/.test(o.kind))).toEqual([]);
    expect(find(objs, 'ServiceAccount')).toEqual([]);
    expect(one(objs, 'Deployment').spec.template.spec.serviceAccountName).toBe('existing-sa');
    const missing = await runHelm(['template', RELEASE, CHART, '--set', 'serviceAccount.create=false']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('serviceAccount.name is required when serviceAccount.create is false');
  });
});
