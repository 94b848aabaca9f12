/**
 * ObjectMeta validation every kind gets (k8s.io/apimachinery/pkg/api/validation): name format,
 * label and annotation keys and values, owner references, and the rule that no finalizer may be
 * added to an object that is being deleted. Messages match the API server's.
 */
import type { KubeObject } from './json.js';
import type { ResourceDef } from './resources.js';
import { fieldError, type FieldError } from './status.js';

const DNS1123_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_SUBDOMAIN = `${DNS1123_LABEL}(\\.${DNS1123_LABEL})*`;
const DNS1035_LABEL = '[a-z]([-a-z0-9]*[a-z0-9])?';
const QUALIFIED_NAME = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]';
const LABEL_VALUE = `(${QUALIFIED_NAME})?`;

const whole = (pattern: string) => new RegExp(`^${pattern}$`);

const NAME_RULES = {
  subdomain: {
    regex: whole(DNS1123_SUBDOMAIN),
    max: 253,
    message: `a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '${DNS1123_SUBDOMAIN}')`,
  },
  label: {
    regex: whole(DNS1123_LABEL),
    max: 63,
    message: `a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '${DNS1123_LABEL}')`,
  },
  dns1035: {
    regex: whole(DNS1035_LABEL),
    max: 63,
    message: `a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '${DNS1035_LABEL}')`,
  },
};

function nameErrors(name: string, rule: ResourceDef['nameRule']): FieldError[] {
  const { regex, max, message } = NAME_RULES[rule];
  const errs: FieldError[] = [];
  if (name.length > max) errs.push(fieldError.invalid('metadata.name', name, `must be no more than ${max} characters`));
  if (!regex.test(name)) errs.push(fieldError.invalid('metadata.name', name, message));
  return errs;
}

function keyErrors(field: string, key: string): FieldError[] {
  const slash = key.lastIndexOf('/');
  const [prefix, name] = slash >= 0 ? [key.slice(0, slash), key.slice(slash + 1)] : ['', key];
  const errs: FieldError[] = [];
  if (slash >= 0 && (!whole(DNS1123_SUBDOMAIN).test(prefix) || prefix.length > 253)) {
    errs.push(fieldError.invalid(field, key, `prefix part ${NAME_RULES.subdomain.message}`));
  }
  if (name.length > 63) errs.push(fieldError.invalid(field, key, 'name part must be no more than 63 characters'));
  if (!whole(QUALIFIED_NAME).test(name)) {
    errs.push(
      fieldError.invalid(
        field,
        key,
        `name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '${QUALIFIED_NAME}')`,
      ),
    );
  }
  return errs;
}

function labelErrors(labels: Record<string, string>): FieldError[] {
  return Object.entries(labels).flatMap(([key, value]) => {
    const errs = keyErrors('metadata.labels', key);
    if (typeof value !== 'string' || value.length > 63) {
      errs.push(fieldError.invalid('metadata.labels', value, 'must be no more than 63 characters'));
    } else if (!whole(LABEL_VALUE).test(value)) {
      errs.push(
        fieldError.invalid(
          'metadata.labels',
          value,
          `a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '${LABEL_VALUE}')`,
        ),
      );
    }
    return errs;
  });
}

function ownerReferenceErrors(obj: KubeObject): FieldError[] {
  const refs = obj.metadata.ownerReferences ?? [];
  const errs: FieldError[] = [];
  refs.forEach((ref, i) => {
    for (const field of ['apiVersion', 'kind', 'name', 'uid'] as const) {
      if (!ref[field]) errs.push(fieldError.invalid(`metadata.ownerReferences[${i}].${field}`, ref[field] ?? '', `${field} must not be empty`));
    }
  });
  const controllers = refs.filter((ref) => ref.controller === true);
  if (controllers.length > 1) {
    errs.push(fieldError.invalid('metadata.ownerReferences', refs, `Only one reference can have Controller set to true. Found "true" in references for ${controllers.map((r) => `${r.kind}/${r.name}`).join(' and ')}`));
  }
  return errs;
}

export function objectMetaErrors(def: ResourceDef, obj: KubeObject, old: KubeObject | undefined): FieldError[] {
  const meta = obj.metadata;
  const errs = [
    ...nameErrors(meta.name ?? '', def.nameRule),
    ...labelErrors(meta.labels ?? {}),
    ...Object.keys(meta.annotations ?? {}).flatMap((key) => keyErrors('metadata.annotations', key)),
    ...ownerReferenceErrors(obj),
  ];
  if (old?.metadata.deletionTimestamp) {
    const added = (meta.finalizers ?? []).filter((f) => !(old.metadata.finalizers ?? []).includes(f)).sort();
    if (added.length > 0) {
      errs.push(
        fieldError.forbidden(
          'metadata.finalizers',
          `no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(', ')}}`,
        ),
      );
    }
  }
  return errs;
}
