/**
 * The Go types (k8s.io/api v0.20) behind the built-in kinds, as far as the emulator needs them to
 * decode a request body as kube-apiserver does: every struct on a path to a metav1.Time or
 * metav1.MicroTime field, with its fields in Go order (json name, Go name, type). Structs off
 * those paths are named only (`fields` absent). godecode.ts walks these.
 */

export type GoType =
  | { t: 'struct'; name: string; fields?: GoField[] }
  | { t: 'slice'; name: string; elem: GoType }
  | { t: 'map'; elem: GoType }
  | { t: 'ptr'; elem: GoType }
  /** metav1.Time: RFC 3339, any fraction, stored to the second. */
  | { t: 'time' }
  /** metav1.MicroTime: RFC 3339 with exactly six fractional digits. */
  | { t: 'microtime' }
  /** Another json.Unmarshaler (FieldsV1, RawExtension). */
  | { t: 'raw' }
  | { t: 'string' }
  | { t: 'number' }
  | { t: 'bool' };

export interface GoField {
  json: string;
  go: string;
  type: GoType;
  /** The embedded struct a field is promoted from (`TypeMeta` for kind and apiVersion). */
  inline?: string;
}

const string: GoType = { t: 'string' };
const number: GoType = { t: 'number' };
const bool: GoType = { t: 'bool' };
const time: GoType = { t: 'time' };
const microTime: GoType = { t: 'microtime' };
type StructType = Extract<GoType, { t: 'struct' }>;
const ptr = (elem: GoType): GoType => ({ t: 'ptr', elem });
const slice = (elem: StructType): GoType => ({ t: 'slice', name: `[]${elem.name}`, elem });
const strings: GoType = { t: 'slice', name: '[]string', elem: string };
const map = (elem: GoType): GoType => ({ t: 'map', elem });
const named = (name: string): StructType => ({ t: 'struct', name });
const struct = (name: string, fields: [string, string, GoType][]): StructType => ({ t: 'struct', name, fields: fields.map(([json, go, type]) => ({ json, go, type })) });

const ownerReference = struct('v1.OwnerReference', [
  ['apiVersion', 'APIVersion', string],
  ['kind', 'Kind', string],
  ['name', 'Name', string],
  ['uid', 'UID', string],
  ['controller', 'Controller', ptr(bool)],
  ['blockOwnerDeletion', 'BlockOwnerDeletion', ptr(bool)],
]);

const managedFieldsEntry = struct('v1.ManagedFieldsEntry', [
  ['manager', 'Manager', string],
  ['operation', 'Operation', string],
  ['apiVersion', 'APIVersion', string],
  ['time', 'Time', ptr(time)],
  ['fieldsType', 'FieldsType', string],
  ['fieldsV1', 'FieldsV1', ptr({ t: 'raw' })],
]);

const objectMeta = struct('v1.ObjectMeta', [
  ['name', 'Name', string],
  ['generateName', 'GenerateName', string],
  ['namespace', 'Namespace', string],
  ['selfLink', 'SelfLink', string],
  ['uid', 'UID', string],
  ['resourceVersion', 'ResourceVersion', string],
  ['generation', 'Generation', number],
  ['creationTimestamp', 'CreationTimestamp', time],
  ['deletionTimestamp', 'DeletionTimestamp', ptr(time)],
  ['deletionGracePeriodSeconds', 'DeletionGracePeriodSeconds', ptr(number)],
  ['labels', 'Labels', map(string)],
  ['annotations', 'Annotations', map(string)],
  ['ownerReferences', 'OwnerReferences', slice(ownerReference)],
  ['finalizers', 'Finalizers', strings],
  ['clusterName', 'ClusterName', string],
  ['managedFields', 'ManagedFields', slice(managedFieldsEntry)],
]);

/** A top-level kind: TypeMeta's kind and apiVersion promoted, then metadata, then its own fields. */
function kind(name: string, fields: [string, string, GoType][]): GoType {
  const top = struct(name, [['metadata', 'ObjectMeta', objectMeta], ...fields]);
  const typeMeta: GoField[] = [
    { json: 'kind', go: 'Kind', type: string, inline: 'TypeMeta' },
    { json: 'apiVersion', go: 'APIVersion', type: string, inline: 'TypeMeta' },
  ];
  return { ...top, fields: [...typeMeta, ...(top.fields ?? [])] };
}

const objectReference = struct('v1.ObjectReference', [
  ['kind', 'Kind', string],
  ['namespace', 'Namespace', string],
  ['name', 'Name', string],
  ['uid', 'UID', string],
  ['apiVersion', 'APIVersion', string],
  ['resourceVersion', 'ResourceVersion', string],
  ['fieldPath', 'FieldPath', string],
]);

const eventSource = struct('v1.EventSource', [
  ['component', 'Component', string],
  ['host', 'Host', string],
]);

const condition = (name: string, times: [string, string][]) =>
  struct(name, [['type', 'Type', string], ['status', 'Status', string], ...times.map(([json, go]): [string, string, GoType] => [json, go, time]), ['reason', 'Reason', string], ['message', 'Message', string]]);

const metaCondition = struct('v1.Condition', [
  ['type', 'Type', string],
  ['status', 'Status', string],
  ['observedGeneration', 'ObservedGeneration', number],
  ['lastTransitionTime', 'LastTransitionTime', time],
  ['reason', 'Reason', string],
  ['message', 'Message', string],
]);

const containerState = struct('v1.ContainerState', [
  ['waiting', 'Waiting', ptr(named('v1.ContainerStateWaiting'))],
  ['running', 'Running', ptr(struct('v1.ContainerStateRunning', [['startedAt', 'StartedAt', time]]))],
  [
    'terminated',
    'Terminated',
    ptr(
      struct('v1.ContainerStateTerminated', [
        ['exitCode', 'ExitCode', number],
        ['signal', 'Signal', number],
        ['reason', 'Reason', string],
        ['message', 'Message', string],
        ['startedAt', 'StartedAt', time],
        ['finishedAt', 'FinishedAt', time],
        ['containerID', 'ContainerID', string],
      ]),
    ),
  ],
]);

const containerStatus = struct('v1.ContainerStatus', [
  ['name', 'Name', string],
  ['state', 'State', containerState],
  ['lastState', 'LastTerminationState', containerState],
  ['ready', 'Ready', bool],
  ['restartCount', 'RestartCount', number],
  ['image', 'Image', string],
  ['imageID', 'ImageID', string],
  ['containerID', 'ContainerID', string],
  ['started', 'Started', ptr(bool)],
]);

/** Go types of the built-in kinds by storage, keyed `group/plural` (the events.k8s.io view apart). */
export const goTypes: Record<string, GoType> = {
  '/configmaps': kind('v1.ConfigMap', [
    ['immutable', 'Immutable', ptr(bool)],
    ['data', 'Data', map(string)],
    ['binaryData', 'BinaryData', map(string)],
  ]),
  '/secrets': kind('v1.Secret', [
    ['immutable', 'Immutable', ptr(bool)],
    ['data', 'Data', map(string)],
    ['stringData', 'StringData', map(string)],
    ['type', 'Type', string],
  ]),
  '/services': kind('v1.Service', [
    ['spec', 'Spec', named('v1.ServiceSpec')],
    ['status', 'Status', struct('v1.ServiceStatus', [['loadBalancer', 'LoadBalancer', named('v1.LoadBalancerStatus')], ['conditions', 'Conditions', slice(metaCondition)]])],
  ]),
  '/endpoints': kind('v1.Endpoints', [['subsets', 'Subsets', slice(named('v1.EndpointSubset'))]]),
  '/pods': kind('v1.Pod', [
    ['spec', 'Spec', named('v1.PodSpec')],
    [
      'status',
      'Status',
      struct('v1.PodStatus', [
        ['phase', 'Phase', string],
        ['conditions', 'Conditions', slice(condition('v1.PodCondition', [['lastProbeTime', 'LastProbeTime'], ['lastTransitionTime', 'LastTransitionTime']]))],
        ['message', 'Message', string],
        ['reason', 'Reason', string],
        ['nominatedNodeName', 'NominatedNodeName', string],
        ['hostIP', 'HostIP', string],
        ['podIP', 'PodIP', string],
        ['podIPs', 'PodIPs', slice(named('v1.PodIP'))],
        ['startTime', 'StartTime', ptr(time)],
        ['initContainerStatuses', 'InitContainerStatuses', slice(containerStatus)],
        ['containerStatuses', 'ContainerStatuses', slice(containerStatus)],
        ['qosClass', 'QOSClass', string],
        ['ephemeralContainerStatuses', 'EphemeralContainerStatuses', slice(containerStatus)],
      ]),
    ],
  ]),
  '/namespaces': kind('v1.Namespace', [
    ['spec', 'Spec', named('v1.NamespaceSpec')],
    ['status', 'Status', struct('v1.NamespaceStatus', [['phase', 'Phase', string], ['conditions', 'Conditions', slice(condition('v1.NamespaceCondition', [['lastTransitionTime', 'LastTransitionTime']]))]])],
  ]),
  '/events': kind('v1.Event', [
    ['involvedObject', 'InvolvedObject', objectReference],
    ['reason', 'Reason', string],
    ['message', 'Message', string],
    ['source', 'Source', eventSource],
    ['firstTimestamp', 'FirstTimestamp', time],
    ['lastTimestamp', 'LastTimestamp', time],
    ['count', 'Count', number],
    ['type', 'Type', string],
    ['eventTime', 'EventTime', microTime],
    ['series', 'Series', ptr(struct('v1.EventSeries', [['count', 'Count', number], ['lastObservedTime', 'LastObservedTime', microTime], ['state', 'State', string]]))],
    ['action', 'Action', string],
    ['related', 'Related', ptr(objectReference)],
    ['reportingComponent', 'ReportingController', string],
    ['reportingInstance', 'ReportingInstance', string],
  ]),
  'events.k8s.io/events': kind('v1.Event', [
    ['eventTime', 'EventTime', microTime],
    ['series', 'Series', ptr(struct('v1.EventSeries', [['count', 'Count', number], ['lastObservedTime', 'LastObservedTime', microTime]]))],
    ['reportingController', 'ReportingController', string],
    ['reportingInstance', 'ReportingInstance', string],
    ['action', 'Action', string],
    ['reason', 'Reason', string],
    ['regarding', 'Regarding', objectReference],
    ['related', 'Related', ptr(objectReference)],
    ['note', 'Note', string],
    ['type', 'Type', string],
    ['deprecatedSource', 'DeprecatedSource', eventSource],
    ['deprecatedFirstTimestamp', 'DeprecatedFirstTimestamp', time],
    ['deprecatedLastTimestamp', 'DeprecatedLastTimestamp', time],
    ['deprecatedCount', 'DeprecatedCount', number],
  ]),
  'apps/deployments': kind('v1.Deployment', [
    ['spec', 'Spec', named('v1.DeploymentSpec')],
    [
      'status',
      'Status',
      struct('v1.DeploymentStatus', [
        ['observedGeneration', 'ObservedGeneration', number],
        ['replicas', 'Replicas', number],
        ['updatedReplicas', 'UpdatedReplicas', number],
        ['readyReplicas', 'ReadyReplicas', number],
        ['availableReplicas', 'AvailableReplicas', number],
        ['unavailableReplicas', 'UnavailableReplicas', number],
        ['conditions', 'Conditions', slice(condition('v1.DeploymentCondition', [['lastUpdateTime', 'LastUpdateTime'], ['lastTransitionTime', 'LastTransitionTime']]))],
        ['collisionCount', 'CollisionCount', ptr(number)],
      ]),
    ],
  ]),
  'policy/poddisruptionbudgets': kind('v1.PodDisruptionBudget', [
    ['spec', 'Spec', named('v1.PodDisruptionBudgetSpec')],
    [
      'status',
      'Status',
      struct('v1.PodDisruptionBudgetStatus', [
        ['observedGeneration', 'ObservedGeneration', number],
        ['disruptedPods', 'DisruptedPods', map(time)],
        ['disruptionsAllowed', 'DisruptionsAllowed', number],
        ['currentHealthy', 'CurrentHealthy', number],
        ['desiredHealthy', 'DesiredHealthy', number],
        ['expectedPods', 'ExpectedPods', number],
        ['conditions', 'Conditions', slice(metaCondition)],
      ]),
    ],
  ]),
  'coordination.k8s.io/leases': kind('v1.Lease', [
    [
      'spec',
      'Spec',
      struct('v1.LeaseSpec', [
        ['holderIdentity', 'HolderIdentity', ptr(string)],
        ['leaseDurationSeconds', 'LeaseDurationSeconds', ptr(number)],
        ['acquireTime', 'AcquireTime', ptr(microTime)],
        ['renewTime', 'RenewTime', ptr(microTime)],
        ['leaseTransitions', 'LeaseTransitions', ptr(number)],
      ]),
    ],
  ]),
  'apiextensions.k8s.io/customresourcedefinitions': kind('v1.CustomResourceDefinition', [
    ['spec', 'Spec', named('v1.CustomResourceDefinitionSpec')],
    [
      'status',
      'Status',
      struct('v1.CustomResourceDefinitionStatus', [
        ['conditions', 'Conditions', slice(condition('v1.CustomResourceDefinitionCondition', [['lastTransitionTime', 'LastTransitionTime']]))],
        ['acceptedNames', 'AcceptedNames', named('v1.CustomResourceDefinitionNames')],
        ['storedVersions', 'StoredVersions', strings],
      ]),
    ],
  ]),
};
