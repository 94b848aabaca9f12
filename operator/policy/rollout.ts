/**
 * How far a relay's Deployment has got, as a pure function of what the Deployment controller
 * reports: the MailRelay's Progressing and Ready conditions, and whether the rollout is stuck.
 * It reads availability (availableReplicas, the Deployment's own Available and Progressing
 * conditions), not only the replica counts: a Deployment whose pods were all created at the
 * new version but never started is updated, not rolled out.
 */
import type { Reason } from '../controllers/reasons.js';

export interface DeploymentCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

/** The parts of an apps/v1 Deployment this reads. */
export interface DeploymentView {
  metadata: { generation?: number };
  spec?: { replicas?: number };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    readyReplicas?: number;
    availableReplicas?: number;
    conditions?: DeploymentCondition[];
  };
}

export interface ConditionValue {
  status: 'True' | 'False';
  reason: Reason;
  message: string;
}

export interface Rollout {
  progressing: ConditionValue;
  ready: ConditionValue;
  /** Set when the Deployment controller gave up waiting (ProgressDeadlineExceeded): the relay is Degraded. */
  stuck?: { reason: Reason; message: string };
  replicas: number;
  readyReplicas: number;
}

/**
 * `desired` is the replica count the operator asked for; `selector` names the pods in messages
 * (what to `kubectl describe`).
 */
export function relayRollout(deployment: DeploymentView | undefined, desired: number, selector: string): Rollout {
  if (!deployment) {
    return {
      progressing: { status: 'True', reason: 'Creating', message: 'the Deployment is being created' },
      ready: { status: 'False', reason: 'NotAvailable', message: `0 of ${desired} relay pod(s) available` },
      replicas: 0,
      readyReplicas: 0,
    };
  }
  const s = deployment.status ?? {};
  const replicas = s.replicas ?? 0;
  const updated = s.updatedReplicas ?? 0;
  const available = s.availableReplicas ?? 0;
  const readyReplicas = s.readyReplicas ?? 0;
  const condition = (type: string) => s.conditions?.find((c) => c.type === type);
  const observed = (s.observedGeneration ?? 0) >= (deployment.metadata.generation ?? 0);
  const unavailable = condition('Available')?.status === 'False' ? condition('Available') : undefined;
  const why = unavailable?.message ? ` (the Deployment: ${unavailable.reason ?? 'Unavailable'}: ${unavailable.message})` : '';

  const ready: ConditionValue =
    desired === 0
      ? { status: 'False', reason: 'ScaledToZero', message: 'no relay pods: replicas is 0' }
      : available >= desired
        ? { status: 'True', reason: 'Available', message: `${available} of ${desired} relay pod(s) available` }
        : { status: 'False', reason: 'NotAvailable', message: `${available} of ${desired} relay pod(s) available${why}` };

  const deadline = condition('Progressing');
  if (observed && deadline?.status === 'False' && deadline.reason === 'ProgressDeadlineExceeded') {
    const message = `the rollout made no progress within the Deployment's progressDeadlineSeconds: ${deadline.message ?? ''}; look at the pods: kubectl describe pods -l ${selector}`;
    return { progressing: { status: 'False', reason: 'ProgressDeadlineExceeded', message }, ready, stuck: { reason: 'RolloutStuck', message }, replicas, readyReplicas };
  }
  const complete = observed && updated === desired && replicas === desired && available >= desired;
  const progressing: ConditionValue = complete
    ? { status: 'False', reason: 'RolledOut', message: `${desired} replica(s) at the current version, all available` }
    : {
        status: 'True',
        reason: 'RollingOut',
        message: observed ? `rolling out: ${updated} of ${desired} updated, ${available} available${replicas > desired ? `, ${replicas - updated} old pod(s) still running` : ''}${why}` : 'the Deployment controller has not yet seen the latest spec',
      };
  return { progressing, ready, replicas, readyReplicas };
}
