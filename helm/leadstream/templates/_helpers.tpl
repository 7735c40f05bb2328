{{/*
Expand the name of the chart.
*/}}
{{- define "leadstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "leadstream.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "leadstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "leadstream.labels" -}}
helm.sh/chart: {{ include "leadstream.chart" . }}
{{ include "leadstream.selectorLabels" . }}
app.kubernetes.io/version: {{ include "leadstream.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: leadstream
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "leadstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leadstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common annotations (a mapping, possibly empty).
*/}}
{{- define "leadstream.annotations" -}}
{{- with .Values.commonAnnotations }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "leadstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leadstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image tag: image.tag, defaulting to the chart's appVersion.
*/}}
{{- define "leadstream.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | toString }}
{{- end }}

{{/*
Full image reference: repository@digest when a digest is given, else repository:tag.
*/}}
{{- define "leadstream.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "leadstream.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the TikTok access token, or "" when there is none.
Fails when both tiktok.existingSecret and tiktok.accessToken are set.
*/}}
{{- define "leadstream.secretName" -}}
{{- if and .Values.tiktok.existingSecret .Values.tiktok.accessToken }}
{{- fail "set either tiktok.existingSecret (preferred) or tiktok.accessToken, not both" }}
{{- end }}
{{- if .Values.tiktok.existingSecret }}
{{- tpl .Values.tiktok.existingSecret . }}
{{- else if .Values.tiktok.accessToken }}
{{- include "leadstream.fullname" . }}
{{- end }}
{{- end }}

{{/*
Whether the chart creates the Secret itself ("true" or "").
*/}}
{{- define "leadstream.createSecret" -}}
{{- if and .Values.tiktok.accessToken (not .Values.tiktok.existingSecret) }}true{{- end }}
{{- end }}

{{/*
Table store and data directory: persistence forces RocksDB on the mounted claim.
*/}}
{{- define "leadstream.store" -}}
{{- if .Values.persistence.enabled }}rocksdb://{{ else }}{{ .Values.tables.store }}{{ end }}
{{- end }}

{{- define "leadstream.dataDir" -}}
{{- if .Values.persistence.enabled }}{{ .Values.persistence.mountPath }}{{ else }}{{ .Values.tables.dataDir }}{{ end }}
{{- end }}

{{/*
Kind of the workload: StatefulSet with persistence, Deployment otherwise.
*/}}
{{- define "leadstream.workloadKind" -}}
{{- if .Values.persistence.enabled }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/*
KEDA's replica ceiling: never more workers than partitions (idle consumers help nobody).
*/}}
{{- define "leadstream.keda.maxReplicaCount" -}}
{{- min (int .Values.autoscaling.keda.maxReplicaCount) (int .Values.kafka.topicPartitions) }}
{{- end }}

{{/*
Checks that cannot be expressed in values.schema.json.
*/}}
{{- define "leadstream.validateValues" -}}
{{- if and (not .Values.autoscaling.keda.enabled) (gt (int .Values.replicaCount) (int .Values.kafka.topicPartitions)) }}
{{- fail (printf "replicaCount (%d) exceeds kafka.topicPartitions (%d): consumers of one group beyond the partition count sit idle" (int .Values.replicaCount) (int .Values.kafka.topicPartitions)) }}
{{- end }}
{{- if and .Values.autoscaling.keda.enabled (gt (int .Values.autoscaling.keda.minReplicaCount) (int (include "leadstream.keda.maxReplicaCount" .))) }}
{{- fail (printf "autoscaling.keda.minReplicaCount (%d) exceeds the effective maxReplicaCount (%s = min(autoscaling.keda.maxReplicaCount, kafka.topicPartitions))" (int .Values.autoscaling.keda.minReplicaCount) (include "leadstream.keda.maxReplicaCount" .)) }}
{{- end }}
{{- end }}

{{/*
The pod template shared by the Deployment and the StatefulSet.
*/}}
{{- define "leadstream.podTemplate" -}}
metadata:
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if include "leadstream.createSecret" . }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "leadstream.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with .Values.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  serviceAccountName: {{ include "leadstream.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: leadstream
      image: {{ include "leadstream.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- /* No command/args: the image's ENTRYPOINT ["leadstream"] + CMD ["worker"] run `leadstream worker`. */}}
      {{- with .Values.containerSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.containerPorts.http }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "leadstream.fullname" . }}
        {{- with .Values.extraEnvFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- $secretName := include "leadstream.secretName" . }}
      {{- if or $secretName .Values.extraEnv }}
      env:
        {{- if $secretName }}
        - name: LEADSTREAM_TIKTOK_ACCESS_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ $secretName }}
              key: {{ .Values.tiktok.existingSecretKey }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- tpl (toYaml .) $ | nindent 8 }}
        {{- end }}
      {{- end }}
      {{- if .Values.startupProbe.enabled }}
      startupProbe:
        httpGet:
          path: /health/ready
          port: http
        {{- toYaml (omit .Values.startupProbe "enabled") | nindent 8 }}
      {{- end }}
      {{- if .Values.livenessProbe.enabled }}
      livenessProbe:
        httpGet:
          path: /health/live
          port: http
        {{- toYaml (omit .Values.livenessProbe "enabled") | nindent 8 }}
      {{- end }}
      {{- if .Values.readinessProbe.enabled }}
      readinessProbe:
        httpGet:
          path: /health/ready
          port: http
        {{- toYaml (omit .Values.readinessProbe "enabled") | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if .Values.persistence.enabled }}
        - name: data
          mountPath: {{ .Values.persistence.mountPath }}
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: tmp
      {{- if .Values.tmpVolume.sizeLimit }}
      emptyDir:
        sizeLimit: {{ .Values.tmpVolume.sizeLimit }}
      {{- else }}
      emptyDir: {}
      {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
