{{- define "datasetjob.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "datasetjob.labels" -}}
app.kubernetes.io/name: datasetjob
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "datasetjob.selectorLabels" -}}
app.kubernetes.io/name: datasetjob
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "datasetjob.serviceAccountName" -}}
{{- default (include "datasetjob.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "datasetjob.redisName" -}}
{{- printf "%s-redis" (include "datasetjob.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "datasetjob.redisSecret" -}}
{{- default (include "datasetjob.redisName" .) .Values.redis.existingSecret -}}
{{- end -}}

{{/* The permissions of the operator, shared by the ClusterRole and the per-namespace Roles. */}}
{{- define "datasetjob.rules" -}}
# Watch DatasetJobs; patch them for Kopf's bookkeeping annotations.
- apiGroups: ["datagen.dev"]
  resources: ["datasetjobs"]
  verbs: ["get", "list", "watch", "patch"]
# Write status (phase, shards, items, output).
- apiGroups: ["datagen.dev"]
  resources: ["datasetjobs/status"]
  verbs: ["get", "patch"]
# blockOwnerDeletion on the Jobs and ConfigMaps a DatasetJob owns.
- apiGroups: ["datagen.dev"]
  resources: ["datasetjobs/finalizers"]
  verbs: ["update"]
# The generate and combine Jobs: create, watch, suspend/resume, replace on a new run.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pod statuses carry the workers' termination-message summaries.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# The per-run ConfigMap with the spec; read spec.items.fromConfigMap to count items.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create"]
# The default Redis's password, handed to each run as a Secret in the run's namespace; a
# dry-run create also tells whether an output credentials Secret exists (create only: the
# operator never reads Secrets).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
# Kueue's Workloads (where Kueue runs): its reason a queued Job waits, for the Queued condition.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list"]
# Events on phase changes.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# The same events through the newer events API (clients may use either).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
