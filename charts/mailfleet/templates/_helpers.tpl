{{/* Chart name, overridable by nameOverride (not in values.yaml: a rarely needed escape hatch). */}}
{{- define "mailfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name of the release's objects: the release name, with the chart name appended unless
the release name already contains it. 63 characters at most (DNS label).
*/}}
{{- define "mailfleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* name-version, for the helm.sh/chart label. */}}
{{- define "mailfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator pods (never change them: Deployment selectors are immutable). */}}
{{- define "mailfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "mailfleet.labels" -}}
helm.sh/chart: {{ include "mailfleet.chart" . }}
{{ include "mailfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mailfleet
{{- end -}}

{{/*
Prefix of cluster-scoped objects (ClusterRoles, ClusterRoleBindings): the full name plus the
release namespace, so releases of the same name in two namespaces (each watching its own
namespaces) do not collide.
*/}}
{{- define "mailfleet.clusterPrefix" -}}
{{- printf "%s-%s" (include "mailfleet.fullname" .) .Release.Namespace | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator's ServiceAccount name. */}}
{{- define "mailfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mailfleet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "mailfleet.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The relay pods' default image: relayImage, else the operator's own image. */}}
{{- define "mailfleet.relayImage" -}}
{{- .Values.relayImage | default (include "mailfleet.image" .) -}}
{{- end -}}

{{/*
RBAC rules on namespaced resources: in a ClusterRole when every namespace is watched, else in
a Role in each watched namespace. Exact verbs only; test/chart.test.ts pins this list.
*/}}
{{- define "mailfleet.namespacedRules" -}}
- apiGroups: ["mailfleet.io"]
  resources: ["mailrelays", "senderdomains"]
  verbs: ["get", "list", "watch", "update", "patch"]
- apiGroups: ["mailfleet.io"]
  resources: ["mailrelays/status", "senderdomains/status"]
  verbs: ["get", "update", "patch"]
- apiGroups: ["mailfleet.io"]
  resources: ["mailrelays/finalizers", "senderdomains/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["configmaps", "secrets", "services"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# patch: the operator sets controller.kubernetes.io/pod-deletion-cost from each relay's queue.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["endpoints"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# The Ingress NAME-links of a MailRelay's spec.links.ingress (one-click unsubscribe).
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["externaldns.k8s.io"]
  resources: ["dnsendpoints"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- end -}}

{{/* Checks across values that the JSON schema cannot express. */}}
{{- define "mailfleet.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "leaderElection.enabled=false needs replicaCount 1 (got %d): without a leader, every replica would reconcile the same objects" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if eq (int .Values.metrics.port) (int .Values.health.port) -}}
{{- fail (printf "metrics.port and health.port must differ (both %d)" (int .Values.metrics.port)) -}}
{{- end -}}
{{- end -}}
