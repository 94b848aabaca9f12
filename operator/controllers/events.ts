/**
 * Kubernetes Events about the operator's decisions (a key created, a rotation step, a
 * missing Secret), as `kubectl describe` shows them. An event that repeats within a few
 * minutes is not sent again: a resync must not flood the namespace.
 */
import type { AnyObject, KubeClient } from '../kube/client.js';

export interface EventSink {
  emit(object: AnyObject, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

const REPEAT_MS = 10 * 60_000;

export class KubeEvents implements EventSink {
  private readonly recent = new Map<string, number>();

  constructor(
    private readonly client: KubeClient,
    private readonly onError: (err: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {}

  emit(object: AnyObject, type: 'Normal' | 'Warning', reason: string, message: string): void {
    const key = `${object.metadata.uid}/${reason}/${message}`;
    const at = this.now();
    if ((this.recent.get(key) ?? -Infinity) > at - REPEAT_MS) return;
    this.recent.set(key, at);
    if (this.recent.size > 10_000) this.recent.clear();
    const namespace = object.metadata.namespace ?? 'default';
    const time = new Date(at).toISOString();
    void this.client
      .create({
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: `${object.metadata.name}.${at.toString(16)}${Math.floor(Math.random() * 0xfff).toString(16)}`, namespace },
        involvedObject: { apiVersion: object.apiVersion, kind: object.kind, name: object.metadata.name, namespace, uid: object.metadata.uid, resourceVersion: object.metadata.resourceVersion },
        type,
        reason,
        message,
        source: { component: 'mailfleet-operator' },
        reportingComponent: 'mailfleet-operator',
        firstTimestamp: time,
        lastTimestamp: time,
        count: 1,
      })
      .catch(this.onError);
  }
}
