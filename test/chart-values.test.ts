// The Helm chart's values through the real helm v4: values.schema.json and the templates refuse bad values with clear messages, and NOTES.txt says what was installed.
import { expect, it } from 'vitest';
import { mailRelaySpecSchema, senderDomainSpecSchema } from '../operator/api/v1alpha1.js';
import { describeHelm, runHelm } from './peers/helm.js';
import { CHART, customValuesFile, FULLNAME, NS, type Obj, parseManifests, RELEASE, useCustomValues } from './support/chart.js';

/** The block between `<<'YAML'` and `YAML` in NOTES, unindented. */
function notesExample(notes: string): Obj[] {
  const m = /<<'YAML'\n([\s\S]*?)\n\s*YAML\n/.exec(notes);
  if (!m) throw new Error(`no kubectl apply example in NOTES:\n${notes}`);
  return parseManifests(m[1]!.replace(/^ {2}/gm, ''));
}

async function installNotes(args: string[] = []): Promise<string> {
  const r = await runHelm(['install', RELEASE, CHART, '--namespace', NS, '--dry-run=client', '--output', 'json', ...args]);
  if (r.code !== 0) throw new Error(`helm install --dry-run=client exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { info: { notes: string } }).info.notes;
}

describeHelm('Helm chart charts/mailfleet (real helm, kubernetes-models validation)', () => {
  useCustomValues();

  it.each([
    { what: 'replicaCount -1', args: ['--set', 'replicaCount=-1'], field: '/replicaCount', message: 'minimum' },
    { what: 'watchNamespaces as a string', args: ['--set', 'watchNamespaces=team-a'], field: '/watchNamespaces', message: 'want array' },
    { what: 'an unknown logLevel', args: ['--set', 'logLevel=verbose'], field: '/logLevel', message: "must be one of 'trace', 'debug', 'info', 'warn', 'error', 'fatal'" },
    { what: 'replicaCount as a string', args: ['--set-string', 'replicaCount=2'], field: '/replicaCount', message: 'want integer' },
    { what: 'a misspelt value', args: ['--set', 'replicas=3'], field: "additional properties 'replicas' not allowed", message: '' },
    { what: 'a namespace that is not a DNS label', args: ['--set', 'watchNamespaces={Team_A}'], field: '/watchNamespaces/0', message: 'does not match pattern' },
    { what: 'a port out of range', args: ['--set', 'metrics.port=70000'], field: '/metrics/port', message: 'maximum' },
  ])('values.schema.json rejects $what, naming the field', async ({ args, field, message }) => {
    const r = await runHelm(['template', RELEASE, CHART, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain("values don't meet the specifications of the schema");
    expect(r.stderr).toContain(field);
    expect(r.stderr).toContain(message);
  });

  it.each([
    { what: 'two replicas without leader election', args: ['--set', 'leaderElection.enabled=false'], message: 'leaderElection.enabled=false needs replicaCount 1 (got 2)' },
    { what: 'the same port for metrics and health', args: ['--set', 'health.port=8080'], message: 'metrics.port and health.port must differ (both 8080)' },
    { what: 'a Kubernetes older than 1.27', args: ['--kube-version', '1.26.5'], message: 'chart requires kubeVersion: >=1.27.0-0 which is incompatible with Kubernetes v1.26.5' },
  ])('refuses $what with a clear message', async ({ args, message }) => {
    const r = await runHelm(['template', RELEASE, CHART, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  it('renders NOTES.txt (helm install --dry-run=client) with what was installed and the next step', async () => {
    const notes = await installNotes();
    expect(notes).toContain(`is installed as release "${RELEASE}" in namespace "${NS}"`);
    expect(notes).toContain('Watching:     all namespaces');
    expect(notes).toContain(`leader election on: one leads through a Lease in "${NS}"`);
    expect(notes).toContain('kubectl apply -n default -f - <<');
    expect(notes).toContain('kubectl -n default get mailrelays,senderdomains');
    expect(notes).toContain("kubectl -n default get senderdomain example-com -o jsonpath='{.status.records}'");
    expect(notes).toContain('kubectl apply --server-side -f crds/');
    expect(notes).not.toMatch(/<no value>|%!/);

    // The example a user copies is accepted by the CRDs' schemas and the operator's render.
    const example = notesExample(notes);
    expect(example.map((o) => `${o.apiVersion} ${o.kind} ${o.metadata.name}`)).toEqual(['mailfleet.io/v1alpha1 SenderDomain example-com', 'mailfleet.io/v1alpha1 MailRelay mail']);
    const [domain, relay] = example as [Obj, Obj];
    const domainSpec = senderDomainSpecSchema.parse(domain.spec);
    expect(domainSpec.domain).toBe('example.com');
    const relaySpec = mailRelaySpecSchema.parse(relay.spec);
    expect(domain.metadata.labels).toMatchObject(relaySpec.senderDomainSelector?.matchLabels ?? { missing: 'selector' });
    // The operator's render (operator/render, still changing: called loosely typed, with the
    // inputs it has taken so far) turns it into objects without any Secret.
    const { renderMailRelay } = (await import('../operator/render/mailrelay.js')) as unknown as {
      renderMailRelay: (relay: unknown, inputs: Record<string, unknown>) => { ok: boolean; message?: string; objects?: Obj[] };
    };
    const rendered = renderMailRelay(
      { apiVersion: 'mailfleet.io/v1alpha1', kind: 'MailRelay', metadata: { name: 'mail', namespace: 'default', uid: 'u' }, spec: relaySpec },
      // No Secret the user makes; the handoff token is the operator's own.
      { senderDomains: [], secretExists: (name: string) => name.endsWith('-handoff'), secretKeys: () => [], defaultImage: 'ghcr.io/mailfleet/mailfleet:0.1.0', serviceMonitors: false },
    );
    expect(rendered.ok ? 'ok' : rendered.message).toBe('ok');
    expect(rendered.objects?.map((o) => o.kind)).toContain('Deployment');
    expect(notes).toContain(`Applications send through mail.default.svc:${relaySpec.listeners[0]!.port}`);
  });

  it('NOTES.txt names the watched namespaces and uses one of them in the example', async () => {
    const notes = await installNotes(['--values', customValuesFile]);
    expect(notes).toContain('Watching:     namespaces a, b (a Role and RoleBinding in each)');
    expect(notes).toContain('(leader election off)');
    expect(notes).toContain('kubectl apply -n a -f - <<');
    expect(notes).toContain('kubectl -n a get mailrelays,senderdomains');
    expect(notes).toContain("kubectl -n a get senderdomain example-com -o jsonpath='{.status.records}'");
    expect(notes).toContain(`(ServiceMonitor ${FULLNAME})`);
    expect(notes).toContain('Relay image:  registry.example.test/mail/relay:9.9.9');
  });
});
