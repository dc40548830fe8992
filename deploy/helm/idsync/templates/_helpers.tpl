{{/* The name of every object: the release's, or fullnameOverride. */}}
{{- define "idsync.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* What selects the pods: the same as the kustomize base, plus the release. */}}
{{- define "idsync.selectorLabels" -}}
app.kubernetes.io/name: idsync
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "idsync.labels" -}}
{{ include "idsync.selectorLabels" . }}
app.kubernetes.io/part-of: idsync
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "idsync.secretName" -}}
{{- default (printf "%s-secrets" (include "idsync.fullname" .)) .Values.secrets.name -}}
{{- end -}}

{{/* The port of a host:port listen address. */}}
{{- define "idsync.port" -}}
{{- splitList ":" . | last -}}
{{- end -}}

{{/*
GOMEMLIMIT: goMemLimit, or 90 % of resources.limits.memory (in Mi or Gi),
in MiB, rounded down.
*/}}
{{- define "idsync.goMemLimit" -}}
{{- $m := toString .Values.resources.limits.memory -}}
{{- if .Values.goMemLimit -}}
{{- .Values.goMemLimit -}}
{{- else if hasSuffix "Gi" $m -}}
{{- div (mul (trimSuffix "Gi" $m | atoi) 1024 9) 10 }}MiB
{{- else if hasSuffix "Mi" $m -}}
{{- div (mul (trimSuffix "Mi" $m | atoi) 9) 10 }}MiB
{{- else -}}
{{- fail "resources.limits.memory: write it in Mi or Gi (GOMEMLIMIT is 90 % of it), or set goMemLimit" -}}
{{- end -}}
{{- end -}}
