/**
 * One credential's access token, kept in memory: fetched when first needed, refreshed before
 * it expires, fetched anew when the smarthost refused it, and never asked for twice at once
 * however many connections wait (they share the one request). Nothing is written to disk: no
 * refresh-token file to rewrite on a read-only Secret mount.
 */

export interface IssuedToken {
  accessToken: string;
  /** Seconds the token is valid for, from the endpoint's `expires_in`. */
  expiresIn: number;
}

interface CachedToken {
  value: string;
  obtainedAt: number;
  expiresAt: number;
}

/** Refresh once less than this is left: five minutes, or half the lifetime of a short-lived token. */
export function refreshAt(token: { obtainedAt: number; expiresAt: number }): number {
  const lifetime = token.expiresAt - token.obtainedAt;
  return token.expiresAt - Math.min(5 * 60_000, lifetime / 2);
}

export class TokenSource {
  private cached?: CachedToken;
  private pending?: Promise<CachedToken>;
  /** Token requests made so far (tests and `mailfleet send` report it). */
  requests = 0;

  constructor(
    private readonly fetchToken: () => Promise<IssuedToken>,
    private readonly now: () => number,
  ) {}

  /**
   * A token to authenticate with. `refused`: the smarthost refused this one, so it is dropped
   * and a new one fetched (unless another caller has already replaced it).
   */
  async token(refused?: string): Promise<string> {
    if (refused !== undefined && this.cached?.value === refused) this.cached = undefined;
    const now = this.now();
    const cached = this.cached;
    if (cached && now < refreshAt(cached)) return cached.value;
    try {
      return (await this.fetchOnce()).value;
    } catch (err) {
      // A refresh that fails while the old token is still valid: use the old one meanwhile.
      if (cached && refused === undefined && this.now() < cached.expiresAt) return cached.value;
      throw err;
    }
  }

  private fetchOnce(): Promise<CachedToken> {
    this.pending ??= (async () => {
      try {
        this.requests++;
        const obtainedAt = this.now();
        const issued = await this.fetchToken();
        this.cached = { value: issued.accessToken, obtainedAt, expiresAt: obtainedAt + issued.expiresIn * 1000 };
        return this.cached;
      } finally {
        this.pending = undefined;
      }
    })();
    return this.pending;
  }
}
