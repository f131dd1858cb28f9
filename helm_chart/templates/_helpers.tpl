{{/*
Names, labels and the checks every render runs.
*/}}

{{- define "order-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: the release name, plus the chart name unless the release name contains it.
*/}}
{{- define "order-service.fullname" -}}
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

{{- define "order-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Recommended labels (app.kubernetes.io/*) plus commonLabels: those of the API's resources.
*/}}
{{- define "order-service.labels" -}}
{{ include "order-service.selectorLabels" . }}
{{ include "order-service.sharedLabels" . }}
{{- end -}}

{{/*
The labels every resource has, whatever its component.
*/}}
{{- define "order-service.sharedLabels" -}}
helm.sh/chart: {{ include "order-service.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: order-service
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "order-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "order-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: api
{{- end -}}

{{- define "order-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "order-service.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
registry/repository:tag, or @digest when a digest is given.
*/}}
{{- define "order-service.image" -}}
{{- $repository := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (toString (default .Chart.AppVersion .Values.image.tag)) -}}
{{- end -}}
{{- end -}}

{{/*
"true" when the effective database is SQLite. An existingSecret is taken to hold a
PostgreSQL URL: the chart cannot read it, and SQLite has no credentials to hide.
*/}}
{{- define "order-service.sqlite" -}}
{{- if and (not .Values.database.existingSecret) (hasPrefix "sqlite:" (toString .Values.database.url)) -}}
true
{{- end -}}
{{- end -}}

{{- define "order-service.databaseSecretName" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else -}}
{{- printf "%s-database" (include "order-service.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "order-service.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecretKey -}}
{{- else -}}
DATABASE_URL
{{- end -}}
{{- end -}}

{{- define "order-service.sqlitePvcName" -}}
{{- default (printf "%s-data" (include "order-service.fullname" .)) .Values.database.sqlite.persistence.existingClaim -}}
{{- end -}}

{{- define "order-service.sandboxFullname" -}}
{{- printf "%s-sandbox" (include "order-service.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- define "order-service.sandboxLabels" -}}
{{ include "order-service.sandboxSelectorLabels" . }}
{{ include "order-service.sharedLabels" . }}
{{- end -}}

{{- define "order-service.sandboxSelectorLabels" -}}
app.kubernetes.io/name: {{ include "order-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: sandbox
{{- end -}}

{{/*
Fails the render on values that cannot work. Called from the Deployment.
*/}}
{{- define "order-service.validateValues" -}}
{{- $sqlite := eq (include "order-service.sqlite" .) "true" -}}
{{- if $sqlite -}}
{{- $many := gt (int .Values.replicaCount) 1 -}}
{{- $hpa := and .Values.hpa.enabled (gt (int .Values.hpa.maxReplicas) 1) -}}
{{- if or $many $hpa -}}
{{- fail (printf "\n\nPostgreSQL is required for more than one replica: database.url is SQLite (%s), which one process only may use, but %s.\nSet database.url to a postgres:// URL (or database.existingSecret), or run one replica: replicaCount=1 and hpa.enabled=false." (toString .Values.database.url) (ternary (printf "replicaCount is %d" (int .Values.replicaCount)) (printf "hpa.enabled is true with hpa.maxReplicas %d" (int .Values.hpa.maxReplicas)) $many)) -}}
{{- end -}}
{{- $path := regexReplaceAll "\\?.*$" (toString .Values.database.url | trimPrefix "sqlite://" | trimPrefix "sqlite:") "" -}}
{{- if not (or (hasPrefix "/app/data/" $path) (hasPrefix "./data/" $path) (hasPrefix "data/" $path) (hasPrefix ":memory:" $path)) -}}
{{- fail (printf "\n\ndatabase.url %s: an SQLite file must be under /app/data/ (the pod's only writable directory besides /tmp), e.g. sqlite:///app/data/orders.db" (toString .Values.database.url)) -}}
{{- end -}}
{{- else if and (not .Values.database.existingSecret) (not (or (hasPrefix "postgres://" (toString .Values.database.url)) (hasPrefix "postgresql://" (toString .Values.database.url)))) -}}
{{- fail "\n\nSet database.url (postgres://user:password@host:5432/db, or sqlite:///app/data/orders.db for one replica) or database.existingSecret." -}}
{{- end -}}
{{- $grace := add (int .Values.config.shutdownGraceSecs) (int .Values.lifecycle.preStopSleepSeconds) -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $grace) -}}
{{- fail (printf "\n\nterminationGracePeriodSeconds (%d) must exceed config.shutdownGraceSecs + lifecycle.preStopSleepSeconds (%d), or Kubernetes kills in-flight sagas." (int .Values.terminationGracePeriodSeconds) (int $grace)) -}}
{{- end -}}
{{- if and .Values.hpa.enabled (gt (int .Values.hpa.minReplicas) (int .Values.hpa.maxReplicas)) -}}
{{- fail (printf "\n\nhpa.minReplicas (%d) is above hpa.maxReplicas (%d)." (int .Values.hpa.minReplicas) (int .Values.hpa.maxReplicas)) -}}
{{- end -}}
{{- end -}}
