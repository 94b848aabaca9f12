/**
 * A real OAuth 2.0 authorization server on loopback: panva's oidc-provider (the certified
 * OpenID Provider most Node identity servers are built on), issuing client credentials tokens
 * as JWTs for the resource `https://outlook.office365.com` with the scope Microsoft 365 asks
 * for, to clients that prove themselves with a secret (client_secret_post) or a signed JWT
 * (private_key_jwt), as Entra ID does. Its keys survive a restart (`restart`), so a token issued
 * before still verifies; a restart is also how a test changes a client (a revoked secret).
 */
import http from 'node:http';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, { type ClientMetadata } from 'oidc-provider';
import { freePort } from './ports.js';

export const M365_RESOURCE = 'https://outlook.office365.com';
export const M365_SCOPE = 'https://outlook.office365.com/.default';

/** A client that proves itself with a secret (client_secret_post), as an Entra ID app with a client secret. */
export function secretClient(secret: string, clientId = 'mailfleet-relay'): ClientMetadata {
  return { client_id: clientId, client_secret: secret, grant_types: ['client_credentials'], redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_post' };
}

export interface OAuth2Server {
  issuer: string;
  tokenUrl: string;
  /** The public keys tokens are signed with (what a resource server verifies against). */
  jwks: { keys: JWK[] };
  /** Token requests answered so far, successful or not (survives a restart). */
  tokenRequests(): number;
  /** Tokens issued so far. */
  tokensIssued(): number;
  /** Stops answering: the port is closed (the endpoint is down). */
  stop(): Promise<void>;
  /** Starts again on the same port with the same keys, with these clients (default: as before). */
  restart(clients?: ClientMetadata[]): Promise<void>;
}

/** `tokenDelayMs`: each token request is answered this much later (a slow endpoint, so requests can overlap). */
export async function startOAuth2Server(opts: { clients: ClientMetadata[]; tokenTtlSeconds: number; port?: number; tokenDelayMs?: number }): Promise<OAuth2Server> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signing = { ...(await exportJWK(privateKey)), kid: 'test-signing', alg: 'RS256', use: 'sig' };
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = signing;
  let requests = 0;
  let issued = 0;
  let server: http.Server | undefined;
  // The issuer names the port, so it is chosen before the server starts.
  const port = opts.port ?? (await freePort());
  let clients = opts.clients;

  const listen = async () => {
    const issuer = `http://127.0.0.1:${port}`;
    const provider = new Provider(issuer, {
      adapter: MemoryStore,
      clients,
      jwks: { keys: [signing] },
      cookies: { keys: ['mailfleet-test-cookie-key'] },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => M365_RESOURCE,
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({ scope: M365_SCOPE, accessTokenFormat: 'jwt', accessTokenTTL: opts.tokenTtlSeconds, jwt: { sign: { alg: 'RS256' } } }),
        },
      },
    });
    provider.on('grant.success', () => issued++);
    const callback = provider.callback();
    server = http.createServer((req, res) => {
      if (req.method !== 'POST' || req.url !== '/token') return callback(req, res);
      requests++;
      setTimeout(() => callback(req, res), opts.tokenDelayMs ?? 0);
    });
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(port, '127.0.0.1', () => resolve());
    });
  };
  await listen();

  return {
    issuer: `http://127.0.0.1:${port}`,
    tokenUrl: `http://127.0.0.1:${port}/token`,
    jwks: { keys: [publicJwk as JWK] },
    tokenRequests: () => requests,
    tokensIssued: () => issued,
    stop: async () => {
      if (server) await closeServer(server);
      server = undefined;
    },
    restart: async (next) => {
      if (server) await closeServer(server);
      if (next) clients = next;
      await listen();
    },
  };
}

/**
 * oidc-provider's store, in memory: what it keeps between requests (nothing, for JWT access
 * tokens of the client credentials grant). Its own memory adapter does the same but warns on
 * every start that it is not for production.
 */
class MemoryStore {
  private static readonly items = new Map<string, Record<string, unknown>>();
  constructor(private readonly model: string) {}
  private key(id: string) {
    return `${this.model}:${id}`;
  }
  upsert(id: string, payload: Record<string, unknown>) {
    MemoryStore.items.set(this.key(id), payload);
    return Promise.resolve();
  }
  find(id: string) {
    return Promise.resolve(MemoryStore.items.get(this.key(id)));
  }
  findByUid(uid: string) {
    return Promise.resolve([...MemoryStore.items.values()].find((p) => p.uid === uid));
  }
  findByUserCode(userCode: string) {
    return Promise.resolve([...MemoryStore.items.values()].find((p) => p.userCode === userCode));
  }
  consume(id: string) {
    const item = MemoryStore.items.get(this.key(id));
    if (item) item.consumed = Math.floor(Date.now() / 1000);
    return Promise.resolve();
  }
  destroy(id: string) {
    MemoryStore.items.delete(this.key(id));
    return Promise.resolve();
  }
  revokeByGrantId(grantId: string) {
    for (const [k, p] of MemoryStore.items) if (p.grantId === grantId) MemoryStore.items.delete(k);
    return Promise.resolve();
  }
}

function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
