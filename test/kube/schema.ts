/**
 * A custom resource's openAPIV3Schema applied the way kube-apiserver applies it: prune fields the
 * schema does not declare, fill in `default`s (structural defaulting), then validate. Error
 * messages follow apiextensions-apiserver's translation of kube-openapi errors, e.g.
 * `spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0`.
 * `pattern` is matched with RE2 semantics (Go's regexp, through re2js), not JavaScript's RegExp.
 * Not evaluated: x-kubernetes-validations (CEL), `format`, validation ratcheting.
 */
import { clone, deepEqual, isObject, type Json, type JsonObject } from './json.js';
import { compileGoRegexp, goRegexpMatches } from './regexp.js';
import { itemKey, listMap } from './shapes.js';
import { fieldError, type FieldError } from './status.js';

export interface JSONSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  format?: string;
  description?: string;
  properties?: Record<string, JSONSchemaProps>;
  items?: JSONSchemaProps;
  additionalProperties?: boolean | JSONSchemaProps;
  required?: string[];
  enum?: Json[];
  default?: Json;
  nullable?: boolean;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: boolean;
  exclusiveMaximum?: boolean;
  multipleOf?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  allOf?: JSONSchemaProps[];
  anyOf?: JSONSchemaProps[];
  oneOf?: JSONSchemaProps[];
  not?: JSONSchemaProps;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-embedded-resource'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: unknown[];
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** Removes undeclared fields in place and returns their paths (for fieldValidation=Warn/Strict). */
export function pruneUnknownFields(obj: JsonObject, schema: JSONSchemaProps): string[] {
  const pruned: string[] = [];
  pruneObject(obj, schema, '', pruned, true);
  return pruned;
}

function pruneValue(value: Json | undefined, schema: JSONSchemaProps, path: string, pruned: string[]): void {
  if (Array.isArray(value)) {
    if (schema.items) value.forEach((item, i) => pruneValue(item, schema.items as JSONSchemaProps, `${path}[${i}]`, pruned));
  } else if (isObject(value)) {
    pruneObject(value, schema, path, pruned, false);
  }
}

function pruneObject(obj: JsonObject, schema: JSONSchemaProps, path: string, pruned: string[], root: boolean): void {
  const keepsObjectMeta = root || schema['x-kubernetes-embedded-resource'] === true;
  for (const key of Object.keys(obj)) {
    if (keepsObjectMeta && (key === 'apiVersion' || key === 'kind' || key === 'metadata')) continue;
    const declared = schema.properties?.[key];
    const additional = schema.additionalProperties;
    if (declared) pruneValue(obj[key], declared, join(path, key), pruned);
    else if (typeof additional === 'object') pruneValue(obj[key], additional, join(path, key), pruned);
    else if (additional !== true && !schema['x-kubernetes-preserve-unknown-fields']) {
      delete obj[key];
      pruned.push(join(path, key));
    }
  }
}

/** Fills absent (or null, where not nullable) fields with their schema default, outermost first. */
export function applyDefaults(obj: JsonObject, schema: JSONSchemaProps): void {
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const current = obj[key];
    if (prop.default !== undefined && (current === undefined || (current === null && !prop.nullable))) obj[key] = clone(prop.default);
    defaultValue(obj[key], prop);
  }
  const additional = schema.additionalProperties;
  if (typeof additional === 'object') {
    for (const key of Object.keys(obj)) if (!schema.properties?.[key]) defaultValue(obj[key], additional);
  }
}

function defaultValue(value: Json | undefined, schema: JSONSchemaProps): void {
  if (Array.isArray(value) && schema.items) value.forEach((item) => defaultValue(item, schema.items as JSONSchemaProps));
  else if (isObject(value)) applyDefaults(value, schema);
}

export function validateAgainstSchema(obj: JsonObject, schema: JSONSchemaProps): FieldError[] {
  const errs: FieldError[] = [];
  validateValue(obj, schema, '', errs);
  return errs;
}

function typeName(value: Json): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function hasType(value: Json, type: string): boolean {
  switch (type) {
    case 'object':
      return isObject(value);
    case 'array':
      return Array.isArray(value);
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    default:
      return typeof value === type;
  }
}

function validateValue(value: Json, schema: JSONSchemaProps, path: string, errs: FieldError[]): void {
  const where = `${path} in body`;
  if (value === null) {
    if (!schema.nullable && schema.type) errs.push(fieldError.typeInvalid(path, 'null', `${where} must be of type ${schema.type}: "null"`));
    return;
  }
  if (schema['x-kubernetes-int-or-string']) {
    if (!hasType(value, 'integer') && !hasType(value, 'string')) {
      errs.push(fieldError.typeInvalid(path, typeName(value), `${where} must be of type integer-or-string: "${typeName(value)}"`));
      return;
    }
  } else if (schema.type && !hasType(value, schema.type)) {
    errs.push(fieldError.typeInvalid(path, typeName(value), `${where} must be of type ${schema.type}: "${typeName(value)}"`));
    return;
  }
  if (schema.enum && !schema.enum.some((allowed) => deepEqual(allowed, value))) {
    errs.push(fieldError.notSupported(path, value, schema.enum));
  }
  if (typeof value === 'number') validateNumber(value, schema, path, errs);
  else if (typeof value === 'string') validateString(value, schema, path, errs);
  else if (Array.isArray(value)) validateArray(value, schema, path, errs);
  else if (isObject(value)) validateObject(value, schema, path, errs);
  validateCombinators(value, schema, path, errs);
}

function validateNumber(value: number, schema: JSONSchemaProps, path: string, errs: FieldError[]): void {
  const where = `${path} in body`;
  const { minimum, maximum, multipleOf } = schema;
  if (minimum !== undefined && (schema.exclusiveMinimum ? value <= minimum : value < minimum)) {
    errs.push(fieldError.invalid(path, value, `${where} should be greater than ${schema.exclusiveMinimum ? '' : 'or equal to '}${minimum}`));
  }
  if (maximum !== undefined && (schema.exclusiveMaximum ? value >= maximum : value > maximum)) {
    errs.push(fieldError.invalid(path, value, `${where} should be less than ${schema.exclusiveMaximum ? '' : 'or equal to '}${maximum}`));
  }
  if (multipleOf !== undefined && value % multipleOf !== 0) {
    errs.push(fieldError.invalid(path, value, `${where} should be a multiple of ${multipleOf}`));
  }
}

function validateString(value: string, schema: JSONSchemaProps, path: string, errs: FieldError[]): void {
  const where = `${path} in body`;
  const length = [...value].length;
  if (schema.maxLength !== undefined && length > schema.maxLength) errs.push(fieldError.tooLong(path, schema.maxLength));
  if (schema.minLength !== undefined && length < schema.minLength) {
    errs.push(fieldError.invalid(path, value, `${where} should be at least ${schema.minLength} chars long`));
  }
  if (schema.pattern !== undefined) {
    // Go's regexp (RE2), as kube-openapi matches; a CRD whose pattern does not compile is refused at creation.
    const { regexp } = compileGoRegexp(schema.pattern);
    if (regexp && !goRegexpMatches(regexp, value)) errs.push(fieldError.invalid(path, value, `${where} should match '${schema.pattern}'`));
  }
}

function validateArray(value: Json[], schema: JSONSchemaProps, path: string, errs: FieldError[]): void {
  if (schema.maxItems !== undefined && value.length > schema.maxItems) errs.push(fieldError.tooMany(path, value.length, schema.maxItems));
  if (schema.minItems !== undefined && value.length < schema.minItems) {
    errs.push(fieldError.invalid(path, value.length, `${path} in body should have at least ${schema.minItems} items`));
  }
  const listType = schema['x-kubernetes-list-type'];
  if (listType === 'set' || listType === 'map') {
    const shape = listMap(schema['x-kubernetes-list-map-keys'] ?? []);
    const identities = value.map((item) => (listType === 'set' ? item : itemKey(shape, item)));
    identities.forEach((identity, i) => {
      if (identities.findIndex((other) => deepEqual(other, identity)) < i) errs.push(fieldError.duplicate(`${path}[${i}]`, identity));
    });
  }
  if (schema.items) value.forEach((item, i) => validateValue(item, schema.items as JSONSchemaProps, `${path}[${i}]`, errs));
}

function validateObject(value: JsonObject, schema: JSONSchemaProps, path: string, errs: FieldError[]): void {
  for (const name of schema.required ?? []) {
    if (value[name] === undefined) errs.push(fieldError.required(join(path, name)));
  }
  const count = Object.keys(value).length;
  if (schema.minProperties !== undefined && count < schema.minProperties) {
    errs.push(fieldError.invalid(path, count, `${path} in body should have at least ${schema.minProperties} properties`));
  }
  if (schema.maxProperties !== undefined && count > schema.maxProperties) {
    errs.push(fieldError.invalid(path, count, `${path} in body should have at most ${schema.maxProperties} properties`));
  }
  const additional = schema.additionalProperties;
  for (const [key, child] of Object.entries(value)) {
    if (path === '' && key === 'metadata') continue;
    const declared = schema.properties?.[key];
    if (declared) validateValue(child, declared, join(path, key), errs);
    else if (typeof additional === 'object') validateValue(child, additional, join(path, key), errs);
    else if (additional === false) errs.push(fieldError.forbidden(join(path, key), 'field not declared in schema'));
  }
}

function validateCombinators(value: Json, schema: JSONSchemaProps, path: string, errs: FieldError[]): void {
  const passes = (branch: JSONSchemaProps) => {
    const branchErrs: FieldError[] = [];
    validateValue(value, branch, path, branchErrs);
    return branchErrs.length === 0;
  };
  for (const branch of schema.allOf ?? []) validateValue(value, branch, path, errs);
  if (schema.anyOf && !schema.anyOf.some(passes)) {
    errs.push(fieldError.invalid(path, value, `${path} in body must validate at least one schema (anyOf)`));
  }
  if (schema.oneOf && schema.oneOf.filter(passes).length !== 1) {
    errs.push(fieldError.invalid(path, value, `${path} in body must validate one and only one schema (oneOf)`));
  }
  if (schema.not && passes(schema.not)) errs.push(fieldError.invalid(path, value, `${path} in body must not validate the schema (not)`));
}
