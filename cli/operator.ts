/** `mailfleet operator`: the control plane, in a pod (in-cluster config) or from a laptop (KUBECONFIG). */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { ErrorCodes, MailfleetError } from '../relay/errors.js';
import { createLogger } from '../relay/log.js';
import { defaultIdentity, startOperator } from '../operator/main.js';
import { packageVersion } from './version.js';

export const OPERATOR_USAGE = `usage: mailfleet operator [--namespaces ns1,ns2] [--leader-elect | --no-leader-elect]
                          [--leader-election-namespace NS] [--metrics-port 8080] [--health-port 8081]
                          [--log-level info]

Reconciles MailRelay and SenderDomain resources. The cluster comes from KUBECONFIG, ~/.kube/config
or, in a pod, its service account. Env: POD_NAME, POD_NAMESPACE (leader election identity and
namespace), MAILFLEET_RELAY_IMAGE (the image of relay pods whose MailRelay names none).`;

/** Where a pod's service account token is mounted (client-node's in-cluster config reads it there). */
export const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

const CLUSTER_HINT =
  'in a cluster the operator runs as a pod with its service account (helm install mailfleet charts/mailfleet, docs/helm.md); ' +
  'elsewhere give it a kubeconfig: KUBECONFIG=FILE mailfleet operator, or in the image: ' +
  'docker run -v $HOME/.kube/config:/kubeconfig:ro -e KUBECONFIG=/kubeconfig IMAGE operator';

/**
 * The cluster the operator talks to, found as client-node's loadFromDefault finds it (KUBECONFIG,
 * then ~/.kube/config, then the pod's service account). Where there is none, loadFromDefault
 * would fall back to http://localhost:8080 and fail later with a stack trace about TLS: this
 * says what is missing instead.
 */
export function loadKubeConfig(): KubeConfig {
  const env = process.env;
  const serviceAccountToken = SERVICE_ACCOUNT_TOKEN;
  const listed = (env.KUBECONFIG ?? '').split(path.delimiter).filter(Boolean);
  const home = env.HOME ? path.join(env.HOME, '.kube', 'config') : undefined;
  let files: string[];
  if (listed.length > 0) {
    const missing = listed.filter((f) => !fs.existsSync(f));
    if (missing.length > 0) throw new MailfleetError(ErrorCodes.KUBECONFIG_INVALID, `KUBECONFIG names ${missing.join(', ')}, which does not exist`, CLUSTER_HINT);
    files = listed;
  } else if (home && fs.existsSync(home)) {
    files = [home];
  } else if (fs.existsSync(serviceAccountToken)) {
    files = [];
  } else {
    throw new MailfleetError(
      ErrorCodes.NO_CLUSTER,
      `no Kubernetes cluster to talk to: KUBECONFIG is not set, ${home ?? '~/.kube/config'} does not exist, and there is no service account token at ${serviceAccountToken} (not in a pod)`,
      CLUSTER_HINT,
    );
  }
  const source = files.length ? files.join(path.delimiter) : "the pod's service account";
  const kubeConfig = new KubeConfig();
  try {
    kubeConfig.loadFromDefault();
  } catch (err) {
    throw new MailfleetError(ErrorCodes.KUBECONFIG_INVALID, `cannot load the cluster from ${source}: ${(err as Error).message}`, CLUSTER_HINT);
  }
  if (!kubeConfig.getCurrentCluster()) {
    throw new MailfleetError(ErrorCodes.KUBECONFIG_INVALID, `${source} has no current context with a cluster (current-context: "${kubeConfig.getCurrentContext() ?? ''}")`, CLUSTER_HINT);
  }
  return kubeConfig;
}

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
  const log = createLogger(values['log-level'], { component: 'operator' });
  const kubeConfig = loadKubeConfig();
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
