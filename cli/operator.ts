/** `mailfleet operator`: the control plane, in a pod (in-cluster config) or from a laptop (KUBECONFIG). */
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { createLogger } from '../relay/log.js';
import { defaultIdentity, startOperator } from '../operator/main.js';
import { packageVersion } from './version.js';

export const OPERATOR_USAGE = `usage: mailfleet operator [--namespaces ns1,ns2] [--leader-elect | --no-leader-elect]
                          [--leader-election-namespace NS] [--metrics-port 8080] [--health-port 8081]
                          [--log-level info]

Reconciles MailRelay and SenderDomain resources. The cluster comes from KUBECONFIG, ~/.kube/config
or, in a pod, its service account. Env: POD_NAME, POD_NAMESPACE (leader election identity and
namespace), MAILFLEET_RELAY_IMAGE (the image of relay pods whose MailRelay names none).`;

export async function operatorCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      namespaces: { type: 'string', default: '' },
      'leader-elect': { type: 'boolean', default: true },
      'no-leader-elect': { type: 'boolean', default: false },
      'leader-election-namespace': { type: 'string' },
      'metrics-port': { type: 'string', default: '8080' },
      'health-port': { type: 'string', default: '8081' },
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(OPERATOR_USAGE);
    return 0;
  }
  const log = createLogger(values['log-level']);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  const operator = await startOperator({
    kubeConfig,
    log,
    namespaces: values.namespaces.split(',').map((n) => n.trim()).filter(Boolean),
    leaderElection: {
      enabled: values['leader-elect'] && !values['no-leader-elect'],
      namespace: values['leader-election-namespace'] ?? process.env.POD_NAMESPACE ?? 'default',
      name: 'mailfleet-operator',
      identity: defaultIdentity(),
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
    },
    metricsPort: Number(values['metrics-port']),
    healthPort: Number(values['health-port']),
    defaultImage: process.env.MAILFLEET_RELAY_IMAGE ?? `ghcr.io/mailfleet/mailfleet:${packageVersion()}`,
    resyncMs: 10 * 60_000,
    // A replica that lost the lease exits; Kubernetes restarts it as a standby.
    onLostLeadership: () => process.exit(1),
  });
  const stop = () => void operator.stop().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return new Promise<number>(() => undefined);
}
