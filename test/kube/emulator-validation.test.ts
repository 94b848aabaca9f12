// The emulator over HTTP: CRD schema validation and defaulting, Time and MicroTime decoding, and RE2 patterns, in kube-apiserver v1.20.2's words.
import { ApiextensionsV1Api, loadYaml, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { KubeObject } from './emulator.js';
import { failure, mailRelay, relayGroup, type StatusBody, waitFor } from './fixtures.js';
import { createRelay, customObjects, emulator, kc, postJson, useEmulator } from './session.js';

useEmulator();

describe('schema validation and defaulting', () => {
  it('answers an invalid custom resource with 422 and one cause per field', async () => {
    const invalid = await failure(createRelay('relay', { domain: 'Not A Domain', replicas: -1, mode: 'carrier-pigeon', ports: [{ name: 'a', port: 1 }, { name: 'b', port: 2 }, { name: 'c', port: 3 }, { name: 'a', port: 4 }], tags: [], note: 5 }));
    expect(invalid.code).toBe(422);
    expect(invalid.status.reason).toBe('Invalid');
    expect(invalid.status.details).toMatchObject({ name: 'relay', group: 'mailfleet.io', kind: 'MailRelay' });
    expect(invalid.status.details?.causes?.map((c) => `${c.field}: ${c.message}`)).toEqual([
      `spec.domain: Invalid value: "Not A Domain": spec.domain in body should match '^[a-z0-9.-]+$'`,
      'spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0',
      'spec.mode: Unsupported value: "carrier-pigeon": supported values: "mx", "smarthost"',
      'spec.ports: Too many: 4: must have at most 3 items',
      'spec.ports[3]: Duplicate value: {"name":"a"}',
      'spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items',
      'spec.note: Invalid value: "integer": spec.note in body must be of type string: "integer"',
      // The scale subresource's replicas path is checked too, after the schema (as apiextensions does).
      '.spec.replicas: Invalid value: -1: should be a non-negative integer',
    ]);
    expect(invalid.status.message).toMatch(/^MailRelay.mailfleet.io "relay" is invalid: \[spec.domain: Invalid value/);
    const missing = await failure(createRelay('relay', { replicas: 1, limits: { perMinute: 0 }, strict: { known: true, unknown: 1 }, labels: { a: 1 } }));
    expect(missing.status.details?.causes?.map((c) => `${c.field}: ${c.message}`)).toEqual([
      'spec.domain: Required value',
      'spec.limits.perMinute: Invalid value: 0: spec.limits.perMinute in body should be greater than 0',
      'spec.strict.unknown: Forbidden: field not declared in schema',
      'spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer"',
    ]);
    const single = await failure(createRelay('relay', { domain: 'example.test', replicas: 51 }));
    expect(single.status.message).toBe('MailRelay.mailfleet.io "relay" is invalid: spec.replicas: Invalid value: 51: spec.replicas in body should be less than or equal to 50');
  });

  it('fills in defaults, prunes undeclared fields with a warning, and refuses them under fieldValidation=Strict', async () => {
    const custom = customObjects();
    const created = await custom.createNamespacedCustomObjectWithHttpInfo({ ...relayGroup, namespace: 'default', body: mailRelay('relay', { domain: 'example.test', bogus: true, extra: { anything: { goes: 1 } }, note: null, window: { min: 5, max: 1 } }) });
    expect((created.data as KubeObject).spec).toEqual({ domain: 'example.test', replicas: 2, mode: 'mx', limits: { perMinute: 600 }, extra: { anything: { goes: 1 } }, note: null, window: { min: 5, max: 1 } });
    expect(created.headers.warning).toBe('299 - "unknown field \\"spec.bogus\\""');
    const strict = await failure(custom.createNamespacedCustomObject({ ...relayGroup, namespace: 'default', body: mailRelay('strict', { domain: 'example.test', bogus: true }), fieldValidation: 'Strict' }));
    expect(strict.code).toBe(400);
    expect(strict.status.message).toBe('MailRelay in version "v1alpha1" cannot be handled as a MailRelay: strict decoding error: unknown field "spec.bogus"');
  });
});

describe('Time and MicroTime, parsed as the API server parses them', () => {
  const leases = '/apis/coordination.k8s.io/v1/namespaces/default/leases';
  const send = async (method: string, path: string, body: string, contentType = 'application/json') => {
    const res = await fetch(`${emulator.url}${path}`, { method, headers: { 'Content-Type': contentType }, body });
    return { code: res.status, status: (await res.json()) as StatusBody };
  };

  // The answers below are kube-apiserver v1.20.2's, word for word.
  it('refuses a MicroTime without exactly six fractional digits with the decoder\'s 400', async () => {
    const body = '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l1"},"spec":{"holderIdentity":"a","renewTime":"2030-01-02T03:04:43.725Z"}}';
    const refused = await send('POST', leases, body);
    expect(refused.code).toBe(400);
    expect(refused.status).toMatchObject({ reason: 'BadRequest', code: 400 });
    expect(refused.status.message).toBe(
      'Lease in version "v1" cannot be handled as a Lease: v1.Lease.Spec: v1.LeaseSpec.RenewTime: unmarshalerDecoder: parsing time "2030-01-02T03:04:43.725Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".725Z" as ".000000", error found in #10 byte of ...|4:43.725Z"}}|..., bigger context ...|entity":"a","renewTime":"2030-01-02T03:04:43.725Z"}}|...',
    );
    expect((await send('PUT', `${leases}/l1`, body)).status.message).toBe(refused.status.message);
    const event = '{"apiVersion":"v1","kind":"Event","metadata":{"name":"e2"},"involvedObject":{"kind":"Pod","name":"p","namespace":"default"},"reason":"R","message":"m","type":"Normal","eventTime":"2030-01-02T03:04:43.725Z","reportingComponent":"x","reportingInstance":"y","action":"A"}';
    expect((await send('POST', '/api/v1/namespaces/default/events', event)).status.message).toBe(
      'Event in version "v1" cannot be handled as a Event: v1.Event.Action: ReportingInstance: ReportingController: EventTime: unmarshalerDecoder: parsing time "2030-01-02T03:04:43.725Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".725Z" as ".000000", error found in #10 byte of ...|4:43.725Z","reportin|..., bigger context ...|e":"Normal","eventTime":"2030-01-02T03:04:43.725Z","reportingComponent":"x","reportingInstance":"y",|...',
    );
  });

  it('words the error as json-iterator does, whatever follows the bad field', async () => {
    const cases: [string, string][] = [
      ['{"spec":{"renewTime":"x","bogus":1,"holderIdentity":"a","leaseTransitions":2},"unknown":{"a":[1,2]},"metadata":{"name":"l3"},"kind":"Lease"}', 'v1.Lease.Spec: v1.LeaseSpec.HolderIdentity: RenewTime: '],
      ['{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l3"},"spec":{"holderIdentity":"a","renewTime":"x","leaseDurationSeconds":15,"leaseTransitions":0}}', 'v1.Lease.Spec: v1.LeaseSpec.LeaseDurationSeconds: RenewTime: '],
      ['{"spec":{"renewTime":"x"},"metadata":{"name":"l3"}}', 'v1.Lease.ObjectMeta: v1.ObjectMeta.Spec: v1.LeaseSpec.RenewTime: '],
      ['{"spec":{"renewTime":"x"},"apiVersion":"coordination.k8s.io/v1","kind":"Lease"}', 'v1.Lease.TypeMeta: Kind: TypeMeta: APIVersion: Spec: v1.LeaseSpec.RenewTime: '],
      ['{"spec":{"renewTime":"x","acquireTime":null,"holderIdentity":null}}', 'v1.Lease.Spec: v1.LeaseSpec.HolderIdentity: AcquireTime: RenewTime: '],
      ['{"spec":{"renewTime":"x","bogus":0,"holderIdentity":"a"}}', 'v1.Lease.Spec: v1.LeaseSpec.RenewTime: '],
      ['{"spec":{"renewTime":"x"},"spec":{}}', 'v1.Lease.Spec: Spec: v1.LeaseSpec.RenewTime: '],
      ['{"metadata":{"creationTimestamp":"x","finalizers":[],"name":"l3"}}', 'v1.Lease.ObjectMeta: v1.ObjectMeta.Name: Finalizers: []string: CreationTimestamp: '],
      ['{"metadata":{"creationTimestamp":"x","ownerReferences":[{"name":"p"}],"name":"l3"}}', 'v1.Lease.ObjectMeta: v1.ObjectMeta.OwnerReferences: []v1.OwnerReference: CreationTimestamp: '],
      ['{"metadata":{"name":"l3","creationTimestamp":"x","generateName":"y"},"kind":"Lease"}', 'v1.Lease.TypeMeta: Kind: ObjectMeta: v1.ObjectMeta.GenerateName: CreationTimestamp: '],
    ];
    for (const [body, expected] of cases) {
      const { status } = await send('POST', leases, body);
      expect(/cannot be handled as a Lease: (.*)unmarshalerDecoder/.exec(status.message)?.[1], body).toBe(expected);
    }
    const parse = async (value: string) => /unmarshalerDecoder: (.*), error found/.exec((await send('POST', leases, JSON.stringify({ spec: { renewTime: value } }))).status.message)?.[1];
    expect(await parse('2030-13-02T03:04:43.123456Z')).toBe('parsing time "2030-13-02T03:04:43.123456Z": month out of range');
    expect(await parse('2030-02-30T03:04:43.123456Z')).toBe('parsing time "2030-02-30T03:04:43.123456Z": day out of range');
    expect(await parse('2030-02-03T03:04:43.123456Zjunk')).toBe('parsing time "2030-02-03T03:04:43.123456Zjunk": extra text: "junk"');
    expect(await parse('2030-02-03 03:04:43.123456Z')).toBe('parsing time "2030-02-03 03:04:43.123456Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse " 03:04:43.123456Z" as "T"');
    expect(/unmarshalerDecoder: (.*), error found/.exec((await send('POST', leases, '{"spec":{"renewTime":5}}')).status.message)?.[1]).toBe('json: cannot unmarshal number into Go value of type string');
  });

  it('answers patches that leave a bad MicroTime as the patch handler does: 422 on "patch", or a 500 for apply', async () => {
    expect((await send('POST', leases, '{"metadata":{"name":"l1"},"spec":{"holderIdentity":"a","acquireTime":"2030-01-02T01:04:43.123456Z"}}')).code).toBe(201);
    const merge = await send('PATCH', `${leases}/l1`, '{"spec":{"renewTime":"2030-01-02T03:04:43.725Z"}}', 'application/merge-patch+json');
    expect(merge.code).toBe(422);
    expect(merge.status.reason).toBe('Invalid');
    expect(merge.status.message).toMatch(/^ "" is invalid: patch: Invalid value: "\{.*\}": v1\.Lease\.Spec: v1\.LeaseSpec\.RenewTime: unmarshalerDecoder: parsing time "2030-01-02T03:04:43\.725Z" as "2006-01-02T15:04:05\.000000Z07:00": cannot parse "\.725Z" as "\.000000", error found in #10 byte of/);
    expect(merge.status.details).toEqual({ causes: [{ reason: 'FieldValueInvalid', field: 'patch', message: merge.status.message.replace(' "" is invalid: patch: ', '') }] });
    const strategic = await send('PATCH', `${leases}/l1`, '{"spec":{"renewTime":"2030-01-02T03:04:43.725Z", "holderIdentity":"b", "leaseDurationSeconds": 5}, "metadata":{"labels":{"a":"b"}}}', 'application/strategic-merge-patch+json');
    expect(strategic.status.message).toBe(
      ' "" is invalid: patch: Invalid value: "map[metadata:map[labels:map[a:b]] spec:map[holderIdentity:b leaseDurationSeconds:5 renewTime:2030-01-02T03:04:43.725Z]]": parsing time "2030-01-02T03:04:43.725Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".725Z" as ".000000"',
    );
    const applied = await send('PATCH', `${leases}/l1?fieldManager=x`, '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","spec":{"renewTime":"2030-01-02T03:04:43.725Z"}}', 'application/apply-patch+yaml');
    expect(applied).toEqual({
      code: 500,
      status: {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: 'failed to convert new object to proper version: unable to convert unstructured object to coordination.k8s.io/v1, Kind=Lease: parsing time "2030-01-02T03:04:43.725Z" as "2006-01-02T15:04:05.000000Z07:00": cannot parse ".725Z" as ".000000"',
        code: 500,
      },
    });
  });

  it('takes any fraction on a Time and stores it in UTC, truncated to the second', async () => {
    const event = { apiVersion: 'v1', kind: 'Event', metadata: { name: 'e1' }, involvedObject: { kind: 'Pod', name: 'p', namespace: 'default' }, reason: 'R', message: 'm', type: 'Normal', firstTimestamp: '2030-01-02T03:04:43.725Z', lastTimestamp: '2030-01-02T03:04:43.999999+01:00', count: 1 };
    expect((await postJson('/api/v1/namespaces/default/events', event)).body).toMatchObject({ firstTimestamp: '2030-01-02T03:04:43Z', lastTimestamp: '2030-01-02T02:04:43Z' });
    const refused = await postJson('/api/v1/namespaces/default/events', { ...event, metadata: { name: 'e2' }, lastTimestamp: 'yesterday' });
    expect(refused.code).toBe(400);
    expect(refused.body.message).toContain('v1.Event.Count: LastTimestamp: unmarshalerDecoder: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"');
  });
});

describe('CRD patterns (RE2, as the API server compiles them)', () => {
  const crdWith = (pattern: string, versions = 1) => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'widgets.test.io' },
    spec: {
      group: 'test.io',
      scope: 'Namespaced',
      names: { kind: 'Widget', plural: 'widgets' },
      versions: Array.from({ length: versions }, (_, i) => ({
        name: `v${i + 1}`,
        served: true,
        storage: i === 0,
        schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', properties: { name: { type: 'string', pattern: i === 0 ? pattern : '^a' }, tags: { type: 'array', items: { type: 'string', pattern } } } } } } },
      })),
    },
  });
  const createCrd = (crd: object) => kc.makeApiClient(ApiextensionsV1Api).createCustomResourceDefinition({ body: loadYaml<V1CustomResourceDefinition>(JSON.stringify(crd)) });

  it('refuses a CRD whose pattern Go cannot compile, with the API server\'s causes sorted by path', async () => {
    const refused = await failure(createCrd(crdWith('^(?!-)[a-z.-]+$')));
    expect(refused.code).toBe(422);
    expect(refused.status.details?.causes).toEqual([
      { reason: 'FieldValueInvalid', field: 'spec.validation.openAPIV3Schema.properties[spec].properties[name].pattern', message: 'Invalid value: "^(?!-)[a-z.-]+$": must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?!`' },
      { reason: 'FieldValueInvalid', field: 'spec.validation.openAPIV3Schema.properties[spec].properties[tags].items.pattern', message: 'Invalid value: "^(?!-)[a-z.-]+$": must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?!`' },
    ]);
    // Versions with different schemas are named one by one; Go 1.19 has no (?<name>...) groups.
    const named = await failure(createCrd(crdWith('(?<x>a)', 2)));
    expect(named.status.details?.causes?.map((c) => `${c.field}: ${c.message}`)).toEqual([
      'spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[name].pattern: Invalid value: "(?<x>a)": must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?<`',
      'spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[tags].items.pattern: Invalid value: "(?<x>a)": must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?<`',
      'spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[tags].items.pattern: Invalid value: "(?<x>a)": must be a valid regular expression, but isn\'t: error parsing regexp: invalid or unsupported Perl syntax: `(?<`',
    ]);
    expect((await failure(createCrd(crdWith('a{1001}')))).status.details?.causes?.[0]?.message).toContain('error parsing regexp: invalid repeat count: `{1001}`');
  });

  it('refuses a CRD of a protected group (*.k8s.io) without its approval annotation, as the API server does', async () => {
    const crd = { ...crdWith('^a'), metadata: { name: 'widgets.test.k8s.io' }, spec: { ...(crdWith('^a') as { spec: object }).spec, group: 'test.k8s.io' } };
    const refused = await failure(createCrd(crd));
    expect(refused.status.details?.causes).toEqual([{ reason: 'FieldValueRequired', field: 'metadata.annotations[api-approved.kubernetes.io]', message: 'Required value: protected groups must have approval annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111' }]);
    await createCrd({ ...crd, metadata: { ...crd.metadata, annotations: { 'api-approved.kubernetes.io': 'https://github.com/kubernetes/kubernetes/pull/1' } } });
  });

  it('matches custom resources with RE2 semantics, not JavaScript\'s', async () => {
    // RE2's \\S is ASCII-only (a no-break space is not a space to it), and inline flags compile.
    await createCrd({ ...crdWith('^(?i)[a-z]+\\S$') });
    await waitFor(() => emulator.get({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', name: 'widgets.test.io' })?.status, 'the CRD established');
    const widget = (name: string, value: string) => customObjects().createNamespacedCustomObject({ group: 'test.io', version: 'v1', plural: 'widgets', namespace: 'default', body: { apiVersion: 'test.io/v1', kind: 'Widget', metadata: { name }, spec: { name: value } } });
    await widget('nbsp', 'ABC\u00a0');
    const refused = await failure(widget('space', 'abc '));
    expect(refused.status.details?.causes?.[0]?.message).toBe(`Invalid value: "abc ": spec.name in body should match '^(?i)[a-z]+\\S$'`);
  });
});
