/**
 * Which provider each destination belongs to (Postfix's transport lookup, with MX rollup):
 * the one cache of it. The scheduler groups destinations of one provider under its limits
 * and holds a destination back until it is classified; the metrics label deliveries with it.
 * The route answers (an MX lookup for the mx route); this remembers the answer for an hour,
 * or half a minute when DNS could not say.
 */
import { OTHER, type Provider } from '../delivery/providers.js';
import type { Route } from '../delivery/routes.js';

export interface Classified {
  /** The scheduler group: a configured provider's name, or the destination itself. */
  group: string;
  /** The `provider` metric label. */
  label: string;
  expiresAt: number;
}

const KNOWN_TTL_MS = 3600_000;
const UNKNOWN_TTL_MS = 30_000;
const MAX_ENTRIES = 50_000;

/** Pure: the classification of a destination from its provider label (undefined: DNS could not say). */
export function classification(destination: string, label: string | undefined, providers: readonly Provider[], now: number): Classified {
  const named = label !== undefined && label !== OTHER && providers.some((p) => p.name === label);
  return { group: named ? label : destination, label: label ?? OTHER, expiresAt: now + (label === undefined ? UNKNOWN_TTL_MS : KNOWN_TTL_MS) };
}

export class ProviderClassifier {
  private readonly known = new Map<string, Classified>();
  private readonly asking = new Set<string>();
  private generation = 0;

  constructor(
    private route: Route,
    private providers: readonly Provider[],
    private readonly now: () => number,
    /** A destination got its classification: the queue may open connections for it now. */
    private readonly onClassified: () => void,
  ) {}

  /** The destination's classification while it is fresh. */
  get(destination: string): Classified | undefined {
    const c = this.known.get(destination);
    return c && c.expiresAt > this.now() ? c : undefined;
  }

  /** Asks the route, once at a time per destination; onClassified follows. */
  classify(destination: string): void {
    if (this.asking.has(destination)) return;
    this.asking.add(destination);
    const generation = this.generation;
    void this.route.providerOf(destination).then(
      (label) => this.learn(destination, label, generation),
      () => this.learn(destination, undefined, generation),
    );
  }

  private learn(destination: string, label: string | undefined, generation: number): void {
    this.asking.delete(destination);
    if (generation !== this.generation) return; // the route or providers changed meanwhile: ask again
    if (this.known.size > MAX_ENTRIES) this.known.clear();
    this.known.set(destination, classification(destination, label, this.providers, this.now()));
    this.onClassified();
  }

  /** A reload: the route or the providers may have changed, so every answer is asked for again. */
  reset(route: Route, providers: readonly Provider[]): void {
    this.route = route;
    this.providers = providers;
    this.generation++;
    this.known.clear();
    this.asking.clear();
  }
}
