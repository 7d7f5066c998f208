{{- define "sluice-cluster.name" -}}
{{- default .Release.Name .Values.clusterName | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice-cluster.labels" -}}
app.kubernetes.io/part-of: sluice
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
