/**
 * Which optional APIs the cluster serves, found by discovery (GET /apis/GROUP/VERSION): the
 * operator renders objects of groups that many clusters lack (policy/v1 before Kubernetes
 * 1.21, networking.k8s.io/v1's Ingress before 1.19, monitoring.coreos.com without the
 * Prometheus Operator, externaldns.k8s.io without external-dns's CRD). An object whose API is
 * not served is left out and reported; the rest of the resource still converges. Discovery needs no RBAC beyond what every authenticated
 * client has (system:discovery).
 */
import type { KubeClient } from './client.js';

/** The group/versions the operator may write and cannot assume. */
export const OPTIONAL_APIS = ['policy/v1', 'networking.k8s.io/v1', 'monitoring.coreos.com/v1', 'externaldns.k8s.io/v1alpha1'] as const;

export class ApiDiscovery {
  private served = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: KubeClient,
    private readonly onChange: (apiVersion: string, served: boolean) => void = () => undefined,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  /** Asks the server again; reports each API that appeared or went away. */
  async refresh(): Promise<void> {
    for (const apiVersion of OPTIONAL_APIS) {
      let now: boolean;
      try {
        now = await this.client.serves(apiVersion);
      } catch (err) {
        this.onError(err);
        continue;
      }
      if (now === this.served.has(apiVersion)) continue;
      if (now) this.served.add(apiVersion);
      else this.served.delete(apiVersion);
      this.onChange(apiVersion, now);
    }
  }

  /** Core and built-in groups the operator relies on are always taken as served. */
  serves(apiVersion: string): boolean {
    return !(OPTIONAL_APIS as readonly string[]).includes(apiVersion) || this.served.has(apiVersion);
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.refresh(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Splits objects into those the cluster serves and those it does not (pure). */
export function partitionServed<T extends { apiVersion: string }>(objects: readonly T[], serves: (apiVersion: string) => boolean): { served: T[]; notServed: T[] } {
  const served: T[] = [];
  const notServed: T[] = [];
  for (const o of objects) (serves(o.apiVersion) ? served : notServed).push(o);
  return { served, notServed };
}
