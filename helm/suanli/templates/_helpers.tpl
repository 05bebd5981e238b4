{{/* Names and labels shared by every template. */}}

{{- define "suanli.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "suanli.fullname" -}}
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

{{- define "suanli.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "suanli.selectorLabels" -}}
app.kubernetes.io/name: {{ include "suanli.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "suanli.labels" -}}
helm.sh/chart: {{ include "suanli.chart" . }}
{{ include "suanli.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: suanli
{{- end -}}

{{- define "suanli.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "suanli.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name the existing ServiceAccount the operator runs as" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "suanli.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "suanli.metricsServiceName" -}}
{{- printf "%s-metrics" (include "suanli.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* mode=member: the labels of the hub's identity in a member cluster (templates/member.yaml). */}}
{{- define "suanli.memberLabels" -}}
helm.sh/chart: {{ include "suanli.chart" . }}
app.kubernetes.io/name: {{ include "suanli.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: member-access
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: suanli
{{- end -}}
