/**
 * The HTTP face of the emulator: kube-apiserver's URL layout (/api/v1/..., /apis/GROUP/VERSION/...,
 * namespaces/NS/RESOURCE/NAME/SUBRESOURCE), its verbs, query parameters and content types, and
 * errors as metav1.Status bodies. Every request is logged; injected failures answer first.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { apiGroup, apiGroupList, apiResourceList, apiVersions } from './discovery.js';
import { isObject } from './json.js';
import { CONTENT_TYPES, type DeleteOptions, type ListOptions, type Registry, type WriteOptions } from './registry.js';
import type { RequestLog, RequestRecord } from './requests.js';
import type { ResourceDef } from './resources.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import { ApiError, errors } from './status.js';
import type { WatchHub } from './watch.js';

interface ResourceRoute {
  def: ResourceDef;
  namespace?: string;
  name?: string;
  subresource?: string;
}

type Route = { document: () => Record<string, unknown> | undefined } | ResourceRoute;

const SERVER_VERSION = { major: '1', minor: '31', gitVersion: 'v1.31.0-mailfleet-emulator', platform: 'linux/amd64' };

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function respond(res: ServerResponse, code: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(code, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function optionalNumber(value: string | null): number | undefined {
  return value === null ? undefined : Number(value);
}

function optionalBoolean(value: string | null): boolean | undefined {
  return value === null ? undefined : value === 'true' || value === '1';
}

export class ApiHandler {
  constructor(
    private readonly registry: Registry,
    private readonly watches: WatchHub,
    private readonly log: RequestLog,
  ) {}

  private route(segments: string[]): Route {
    const resources = this.registry.resources;
    let group: string;
    let version: string | undefined;
    let rest: string[];
    if (segments[0] === 'api') {
      if (segments.length === 1) return { document: apiVersions };
      [group, version, rest] = ['', segments[1], segments.slice(2)];
    } else {
      if (segments.length === 1) return { document: () => apiGroupList(resources) };
      group = segments[1] as string;
      if (segments.length === 2) return { document: () => apiGroup(resources, group) };
      [version, rest] = [segments[2], segments.slice(3)];
    }
    const servedVersion = version as string;
    if (rest.length === 0) return { document: () => apiResourceList(resources, group, servedVersion) };
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3 && resources.find(group, servedVersion, rest[2] as string)?.namespaced) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const [plural, name, subresource, ...extra] = rest;
    const def = resources.find(group, servedVersion, plural as string);
    if (!def || extra.length > 0 || (def.namespaced && namespace === undefined && name !== undefined)) throw errors.pathNotFound();
    if (subresource !== undefined && !((subresource === 'status' && def.statusSubresource) || (subresource === 'scale' && def.scale))) throw errors.pathNotFound();
    return { def, ...(namespace !== undefined ? { namespace } : {}), ...(name !== undefined ? { name } : {}), ...(subresource !== undefined ? { subresource } : {}) };
  }

  readonly handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const query = url.searchParams;
    const method = req.method ?? 'GET';
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
    const watching = method === 'GET' && (query.get('watch') === 'true' || query.get('watch') === '1');
    const record: Omit<RequestRecord, 'code'> = {
      method,
      path: url.pathname,
      query: url.search,
      verb: 'get',
      ...(contentType ? { contentType } : {}),
      ...(query.get('fieldManager') ? { fieldManager: query.get('fieldManager') as string } : {}),
    };
    let code = 200;
    try {
      const body = await readBody(req);
      const segments = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
      if (segments[0] !== 'api' && segments[0] !== 'apis') {
        code = this.nonResource(url.pathname, res);
        return;
      }
      const route = this.route(segments);
      if ('document' in route) {
        const document = method === 'GET' ? route.document() : undefined;
        if (!document) throw method === 'GET' ? errors.pathNotFound() : errors.methodNotAllowed();
        respond(res, 200, document);
        return;
      }
      const { def, namespace, name, subresource } = route;
      // The API server makes a custom resource's storage, and its watch cache, on the first request for it.
      this.registry.store.watchCache(def.storage);
      Object.assign(record, {
        verb: this.verbOf(method, name, watching),
        group: def.group,
        version: def.version,
        resource: def.plural,
        ...(subresource ? { subresource } : {}),
        ...(namespace !== undefined ? { namespace } : {}),
        ...(name !== undefined ? { name } : {}),
      });
      const injected = this.log.takeFailure(record);
      if (injected) throw injected;
      if (watching) {
        this.watches.serve(
          {
            def,
            ...(namespace !== undefined ? { namespace } : {}),
            labels: parseLabelSelector(query.get('labelSelector') ?? ''),
            fields: parseFieldSelector([query.get('fieldSelector'), name !== undefined ? `metadata.name=${name}` : null].filter(Boolean).join(',')),
            ...(query.get('resourceVersion') !== null ? { resourceVersion: query.get('resourceVersion') as string } : {}),
            allowBookmarks: optionalBoolean(query.get('allowWatchBookmarks')) ?? false,
            sendInitialEvents: optionalBoolean(query.get('sendInitialEvents')) ?? false,
            ...(query.get('timeoutSeconds') !== null ? { timeoutSeconds: Number(query.get('timeoutSeconds')) } : {}),
          },
          res,
        );
        return;
      }
      const [status, result, headers] = this.dispatch(route, method, query, contentType, body, req.headers['user-agent']);
      code = status;
      respond(res, status, result, headers);
    } catch (err) {
      const apiError = err instanceof ApiError ? err : new ApiError(500, 'InternalError', `emulator error: ${(err as Error).stack ?? String(err)}`);
      code = apiError.code;
      respond(res, apiError.code, apiError.toStatus(), apiError.headers);
    } finally {
      this.log.records.push({ ...record, code });
    }
  };

  private nonResource(path: string, res: ServerResponse): number {
    if (path === '/version') {
      respond(res, 200, SERVER_VERSION);
      return 200;
    }
    if (['/healthz', '/livez', '/readyz'].includes(path)) {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
      return 200;
    }
    respond(res, 404, errors.pathNotFound().toStatus());
    return 404;
  }

  private verbOf(method: string, name: string | undefined, watching: boolean): string {
    if (method === 'GET') return watching ? 'watch' : name === undefined ? 'list' : 'get';
    if (method === 'DELETE') return name === undefined ? 'deletecollection' : 'delete';
    return { POST: 'create', PUT: 'update', PATCH: 'patch' }[method] ?? method.toLowerCase();
  }

  private parseObject(contentType: string, body: string): unknown {
    if (!body.trim()) throw errors.badRequest('the request body is empty');
    try {
      if (contentType === 'application/yaml') return parseYaml(body);
      if (contentType === CONTENT_TYPES.json || contentType === '') return JSON.parse(body);
    } catch (err) {
      throw errors.badRequest(`the body of the request could not be decoded: ${(err as Error).message}`);
    }
    throw errors.unsupportedMediaType(contentType, [CONTENT_TYPES.json, 'application/yaml']);
  }

  /** A POST or PUT body of the resource's own kind, decoded as the API server decodes it. */
  private decodeBody(def: ResourceDef, contentType: string, body: string): unknown {
    const parsed = this.parseObject(contentType, body);
    this.registry.checkBody(def, contentType, body, parsed);
    return parsed;
  }

  private dispatch(
    route: ResourceRoute,
    method: string,
    query: URLSearchParams,
    contentType: string,
    body: string,
    userAgent: string | undefined,
  ): [number, unknown, Record<string, string | string[]>] {
    const { def, namespace, name, subresource = '' } = route;
    const registry = this.registry;
    const writeOptions: WriteOptions = {
      dryRun: query.get('dryRun') === 'All',
      ...(query.get('fieldManager') ? { fieldManager: query.get('fieldManager') as string } : {}),
      ...(userAgent ? { userAgent } : {}),
      ...(query.get('fieldValidation') ? { fieldValidation: query.get('fieldValidation') as string } : {}),
    };
    const listOptions: ListOptions = {
      ...(query.get('labelSelector') ? { labelSelector: query.get('labelSelector') as string } : {}),
      ...(query.get('fieldSelector') ? { fieldSelector: query.get('fieldSelector') as string } : {}),
      ...(query.get('limit') ? { limit: Number(query.get('limit')) } : {}),
      ...(query.get('continue') ? { continueToken: query.get('continue') as string } : {}),
    };
    const written = (result: { object: unknown; created: boolean; warnings: string[] }): [number, unknown, Record<string, string | string[]>] => [
      result.created ? 201 : 200,
      result.object,
      result.warnings.length ? { Warning: result.warnings.map((w) => `299 - ${JSON.stringify(w)}`) } : {},
    ];

    if (name === undefined) {
      if (method === 'GET') return [200, registry.list(def, namespace, listOptions), {}];
      if (method === 'POST' && (namespace !== undefined || !def.namespaced)) return written(registry.create(def, namespace, this.decodeBody(def, contentType, body), writeOptions));
      if (method === 'DELETE' && (namespace !== undefined || !def.namespaced)) return [200, registry.deleteCollection(def, namespace, listOptions, this.deleteOptions(query, body)), {}];
      throw errors.methodNotAllowed();
    }
    if (subresource === 'scale') {
      if (method === 'GET') return [200, registry.scaleOf(def, registry.get(def, namespace, name)), {}];
      if (method === 'PUT') return [200, registry.updateScale(def, namespace, name, this.parseObject(contentType, body), writeOptions), {}];
    }
    switch (method) {
      case 'GET':
        return [200, registry.get(def, namespace, name), {}];
      case 'PUT':
        return written(registry.update(def, namespace, name, this.decodeBody(def, contentType, body), writeOptions, subresource));
      case 'PATCH': {
        const force = optionalBoolean(query.get('force'));
        return written(registry.patch(def, namespace, name, contentType, body, { ...writeOptions, ...(force !== undefined ? { force } : {}) }, subresource));
      }
      case 'DELETE':
        if (subresource) throw errors.methodNotAllowed();
        return [200, registry.delete(def, namespace, name, this.deleteOptions(query, body)), {}];
      default:
        throw errors.methodNotAllowed();
    }
  }

  /** DeleteOptions from the body (client-node's typed APIs) merged with query parameters (KubernetesObjectApi). */
  private deleteOptions(query: URLSearchParams, body: string): DeleteOptions {
    let options: Record<string, unknown> = {};
    if (body.trim()) {
      try {
        const parsed: unknown = JSON.parse(body);
        if (isObject(parsed)) options = parsed;
      } catch (err) {
        throw errors.badRequest(`the DeleteOptions body could not be decoded: ${(err as Error).message}`);
      }
    }
    const propagationPolicy = query.get('propagationPolicy') ?? (options.propagationPolicy as string | undefined);
    const gracePeriodSeconds = optionalNumber(query.get('gracePeriodSeconds')) ?? (options.gracePeriodSeconds as number | undefined);
    const orphanDependents = optionalBoolean(query.get('orphanDependents')) ?? (options.orphanDependents as boolean | undefined);
    const dryRun = query.get('dryRun') === 'All' || (Array.isArray(options.dryRun) && options.dryRun.includes('All'));
    return {
      dryRun,
      ...(propagationPolicy ? { propagationPolicy } : {}),
      ...(gracePeriodSeconds !== undefined ? { gracePeriodSeconds } : {}),
      ...(orphanDependents !== undefined ? { orphanDependents } : {}),
      ...(isObject(options.preconditions) ? { preconditions: options.preconditions as DeleteOptions['preconditions'] & object } : {}),
    };
  }
}
