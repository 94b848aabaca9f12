import { describe, expect, it } from 'vitest';
import { relayRollout, type DeploymentView } from './rollout.js';

const SELECTOR = 'app.kubernetes.io/name=mailfleet-relay,app.kubernetes.io/instance=outbound';

/** A Deployment as the v1.20 controller manager reports it (fields seen on the real server). */
const deployment = (status: DeploymentView['status'], generation = 1): DeploymentView => ({ metadata: { generation }, spec: { replicas: 2 }, status });

describe('relayRollout', () => {
  it('is not rolled out while every pod is updated but none is available (the Deployment says MinimumReplicasUnavailable)', () => {
    const r = relayRollout(
      deployment({
        observedGeneration: 1,
        replicas: 2,
        updatedReplicas: 2,
        unavailableReplicas: 2,
        conditions: [
          { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'Deployment does not have minimum availability.' },
          { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: 'ReplicaSet "outbound-5d4f" is progressing.' },
        ],
      } as DeploymentView['status']),
      2,
      SELECTOR,
    );
    expect(r.progressing).toMatchObject({ status: 'True', reason: 'RollingOut' });
    expect(r.progressing.message).toBe('rolling out: 2 of 2 updated, 0 available (the Deployment: MinimumReplicasUnavailable: Deployment does not have minimum availability.)');
    expect(r.ready).toMatchObject({ status: 'False', reason: 'NotAvailable' });
    expect(r.stuck).toBeUndefined();
  });

  it('is rolled out and ready when the current generation is observed and every desired pod is available', () => {
    const r = relayRollout(deployment({ observedGeneration: 3, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2, conditions: [{ type: 'Available', status: 'True' }] }, 3), 2, SELECTOR);
    expect(r.progressing).toMatchObject({ status: 'False', reason: 'RolledOut' });
    expect(r.ready).toEqual({ status: 'True', reason: 'Available', message: '2 of 2 relay pod(s) available' });
  });

  it('is still rolling out while old pods run beside the new ones, or the controller has not seen the new spec', () => {
    expect(relayRollout(deployment({ observedGeneration: 2, replicas: 3, updatedReplicas: 1, availableReplicas: 3 }, 2), 2, SELECTOR).progressing.message).toBe('rolling out: 1 of 2 updated, 3 available, 2 old pod(s) still running');
    expect(relayRollout(deployment({ observedGeneration: 1, replicas: 2, updatedReplicas: 2, availableReplicas: 2 }, 2), 2, SELECTOR).progressing).toMatchObject({ status: 'True', message: 'the Deployment controller has not yet seen the latest spec' });
  });

  it('reports a rollout past its progress deadline as stuck, saying which pods to look at', () => {
    const r = relayRollout(
      deployment({ observedGeneration: 1, replicas: 2, updatedReplicas: 2, conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "outbound-5d4f" has timed out progressing.' }] }),
      2,
      SELECTOR,
    );
    expect(r.progressing).toMatchObject({ status: 'False', reason: 'ProgressDeadlineExceeded' });
    expect(r.stuck?.reason).toBe('RolloutStuck');
    expect(r.stuck?.message).toContain(`kubectl describe pods -l ${SELECTOR}`);
    expect(r.ready.status).toBe('False');
  });

  it('is creating before the Deployment shows up, and not ready when scaled to zero', () => {
    expect(relayRollout(undefined, 2, SELECTOR).progressing.reason).toBe('Creating');
    expect(relayRollout(deployment({ observedGeneration: 1, replicas: 0 }), 0, SELECTOR).ready).toMatchObject({ status: 'False', reason: 'ScaledToZero' });
  });
});
