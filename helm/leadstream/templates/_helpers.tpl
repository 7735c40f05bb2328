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
Whether the chart creates the Secret itself ("true" or ""): for the TikTok token, the Meta token
or both (one Secret, one key each).
*/}}
{{- define "leadstream.createSecret" -}}
{{- if or (include "leadstream.createTiktokSecret" .) (include "leadstream.meta.createSecret" .) }}true{{- end }}
{{- end }}

{{- define "leadstream.createTiktokSecret" -}}
{{- if and .Values.tiktok.accessToken (not .Values.tiktok.existingSecret) }}true{{- end }}
{{- end }}

{{/*
Name of the Secret holding the Meta access token, or "" when there is none (Meta off).
Fails when both meta.existingSecret and meta.accessToken are set, or when only one of a dataset
id and a token is given (the worker would refuse to start).
*/}}
{{- define "leadstream.meta.secretName" -}}
{{- if and .Values.meta.existingSecret .Values.meta.accessToken }}
{{- fail "set either meta.existingSecret (preferred) or meta.accessToken, not both" }}
{{- end }}
{{- $token := or .Values.meta.existingSecret .Values.meta.accessToken }}
{{- if and .Values.meta.pixelId (not $token) }}
{{- fail "meta.pixelId is set without a Meta token: set meta.existingSecret (preferred) or meta.accessToken" }}
{{- end }}
{{- if and $token (not .Values.meta.pixelId) }}
{{- fail "a Meta token is set without meta.pixelId" }}
{{- end }}
{{- if .Values.meta.existingSecret }}
{{- tpl .Values.meta.existingSecret . }}
{{- else if .Values.meta.accessToken }}
{{- include "leadstream.fullname" . }}
{{- end }}
{{- end }}

{{- define "leadstream.meta.createSecret" -}}
{{- if and .Values.meta.accessToken (not .Values.meta.existingSecret) }}true{{- end }}
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
Kafka security: "true" or "" helpers shared by the ConfigMap, the pod and the KEDA objects.
*/}}
{{- define "leadstream.kafka.sasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{- define "leadstream.kafka.ssl" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{/* Where the Kafka TLS files and the registry CA are mounted (read-only). */}}
{{- define "leadstream.kafka.tlsDir" -}}/etc/leadstream/kafka-tls{{- end }}
{{- define "leadstream.schemaRegistry.tlsDir" -}}/etc/leadstream/schema-registry-tls{{- end }}

{{/* The Secret of the Kafka CA, or "" when no CA file is mounted. */}}
{{- define "leadstream.kafka.tls.caSecret" -}}
{{- $tls := .Values.kafka.tls }}
{{- if and $tls.enabled $tls.caKey }}
{{- default $tls.existingSecret $tls.caExistingSecret }}
{{- end }}
{{- end }}

{{/* "true" when a client certificate and key are mounted (mTLS). */}}
{{- define "leadstream.kafka.tls.clientCert" -}}
{{- $tls := .Values.kafka.tls }}
{{- if and $tls.enabled $tls.existingSecret $tls.certKey $tls.keyKey }}true{{ end }}
{{- end }}

{{/* "true" when the client key's password comes from the Secret. */}}
{{- define "leadstream.kafka.tls.keyPassword" -}}
{{- if and (include "leadstream.kafka.tls.clientCert" .) .Values.kafka.tls.keyPasswordKey }}true{{ end }}
{{- end }}

{{/* "true" when any Kafka TLS file is mounted. */}}
{{- define "leadstream.kafka.tls.mounted" -}}
{{- if or (include "leadstream.kafka.tls.caSecret" .) (include "leadstream.kafka.tls.clientCert" .) }}true{{ end }}
{{- end }}

{{/* "true" when the SASL username comes from the Secret rather than the ConfigMap. */}}
{{- define "leadstream.kafka.auth.usernameFromSecret" -}}
{{- if and (include "leadstream.kafka.sasl" .) (not .Values.kafka.auth.username) }}true{{ end }}
{{- end }}

{{/* "true" when the schema registry's basic auth comes from a Secret. */}}
{{- define "leadstream.schemaRegistry.basicAuth" -}}
{{- if and .Values.schemaRegistry.existingSecret .Values.schemaRegistry.basicAuthKey }}true{{ end }}
{{- end }}

{{/* KEDA's name of the SASL mechanism. */}}
{{- define "leadstream.keda.sasl" -}}
{{- get (dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512") .Values.kafka.auth.mechanism }}
{{- end }}

{{/*
Name of the TriggerAuthentication the triggers reference: autoscaling.keda.authenticationRef, else
the chart's own when Kafka needs credentials or TLS files, else "".
*/}}
{{- define "leadstream.keda.authenticationRef" -}}
{{- if .Values.autoscaling.keda.authenticationRef }}
{{- .Values.autoscaling.keda.authenticationRef }}
{{- else if include "leadstream.keda.createTriggerAuthentication" . }}
{{- include "leadstream.fullname" . }}
{{- end }}
{{- end }}

{{- define "leadstream.keda.createTriggerAuthentication" -}}
{{- if and .Values.autoscaling.keda.enabled (not .Values.autoscaling.keda.authenticationRef) (or (include "leadstream.kafka.sasl" .) (include "leadstream.kafka.tls.mounted" .)) }}true{{ end }}
{{- end }}

{{/*
Checks of the Kafka security values: each names the values to fix.
*/}}
{{- define "leadstream.validateKafkaSecurity" -}}
{{- $k := .Values.kafka }}
{{- $protocol := $k.securityProtocol }}
{{- if include "leadstream.kafka.sasl" . }}
{{- if not $k.auth.mechanism }}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.auth.mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" $protocol) }}
{{- end }}
{{- if not $k.auth.existingSecret }}
{{- fail (printf "kafka.securityProtocol=%s needs kafka.auth.existingSecret, the Secret holding the SASL password (key kafka.auth.passwordKey)" $protocol) }}
{{- end }}
{{- if not $k.auth.passwordKey }}
{{- fail "kafka.auth.passwordKey is empty: name the key of the SASL password in kafka.auth.existingSecret" }}
{{- end }}
{{- if and (not $k.auth.username) (not $k.auth.usernameKey) }}
{{- fail "set kafka.auth.username or kafka.auth.usernameKey (the key of the username in kafka.auth.existingSecret)" }}
{{- end }}
{{- else if or $k.auth.mechanism $k.auth.username $k.auth.existingSecret }}
{{- fail (printf "kafka.auth is set but kafka.securityProtocol=%s does not use SASL: set it to SASL_SSL (or SASL_PLAINTEXT)" $protocol) }}
{{- end }}
{{- if $k.tls.enabled }}
{{- if not (include "leadstream.kafka.ssl" .) }}
{{- fail (printf "kafka.tls.enabled needs kafka.securityProtocol SSL or SASL_SSL, not %s" $protocol) }}
{{- end }}
{{- if and $k.tls.existingSecret (or $k.tls.certKey $k.tls.keyKey) (not (and $k.tls.certKey $k.tls.keyKey)) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together: set both (mTLS) or neither" }}
{{- end }}
{{- if and $k.tls.keyPasswordKey (not (include "leadstream.kafka.tls.clientCert" .)) }}
{{- fail "kafka.tls.keyPasswordKey needs a client key: kafka.tls.existingSecret with kafka.tls.certKey and kafka.tls.keyKey" }}
{{- end }}
{{- if not (include "leadstream.kafka.tls.mounted" .) }}
{{- fail "kafka.tls.enabled mounts nothing: set kafka.tls.existingSecret (client certificate and key, and the CA) and/or kafka.tls.caExistingSecret with kafka.tls.caKey" }}
{{- end }}
{{- else if or $k.tls.existingSecret $k.tls.caExistingSecret }}
{{- fail "kafka.tls.existingSecret or kafka.tls.caExistingSecret is set but kafka.tls.enabled is false: set kafka.tls.enabled=true" }}
{{- end }}
{{- if and .Values.schemaRegistry.tls.existingSecret (not .Values.schemaRegistry.tls.caKey) }}
{{- fail "schemaRegistry.tls.existingSecret needs schemaRegistry.tls.caKey, the key of the CA" }}
{{- end }}
{{- end }}

{{/*
Checks that cannot be expressed in values.schema.json.
*/}}
{{- define "leadstream.validateValues" -}}
{{- include "leadstream.validateKafkaSecurity" . }}
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
      {{- $sasl := include "leadstream.kafka.sasl" . }}
      {{- $keyPassword := include "leadstream.kafka.tls.keyPassword" . }}
      {{- $registryAuth := include "leadstream.schemaRegistry.basicAuth" . }}
      {{- $metaSecret := include "leadstream.meta.secretName" . }}
      {{- if or $secretName $metaSecret $sasl $keyPassword $registryAuth .Values.extraEnv }}
      {{- /* Secrets reach the container only here, through secretKeyRef, never through the ConfigMap. */}}
      env:
        {{- if $secretName }}
        - name: LEADSTREAM_TIKTOK_ACCESS_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ $secretName }}
              key: {{ .Values.tiktok.existingSecretKey }}
        {{- end }}
        {{- if $metaSecret }}
        - name: LEADSTREAM_META_ACCESS_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ $metaSecret }}
              key: {{ .Values.meta.existingSecretKey }}
        {{- end }}
        {{- if include "leadstream.kafka.auth.usernameFromSecret" . }}
        - name: LEADSTREAM_KAFKA_SASL_USERNAME
          valueFrom:
            secretKeyRef:
              name: {{ .Values.kafka.auth.existingSecret }}
              key: {{ .Values.kafka.auth.usernameKey }}
        {{- end }}
        {{- if $sasl }}
        - name: LEADSTREAM_KAFKA_SASL_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ .Values.kafka.auth.existingSecret }}
              key: {{ .Values.kafka.auth.passwordKey }}
        {{- end }}
        {{- if $keyPassword }}
        - name: LEADSTREAM_KAFKA_SSL_KEY_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ .Values.kafka.tls.existingSecret }}
              key: {{ .Values.kafka.tls.keyPasswordKey }}
        {{- end }}
        {{- if $registryAuth }}
        - name: LEADSTREAM_SCHEMA_REGISTRY_BASIC_AUTH
          valueFrom:
            secretKeyRef:
              name: {{ .Values.schemaRegistry.existingSecret }}
              key: {{ .Values.schemaRegistry.basicAuthKey }}
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
        {{- if include "leadstream.kafka.tls.mounted" . }}
        - name: kafka-tls
          mountPath: {{ include "leadstream.kafka.tlsDir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.schemaRegistry.tls.existingSecret }}
        - name: schema-registry-tls
          mountPath: {{ include "leadstream.schemaRegistry.tlsDir" . }}
          readOnly: true
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
    {{- if include "leadstream.kafka.tls.mounted" . }}
    {{- $tls := .Values.kafka.tls }}
    {{- $caSecret := include "leadstream.kafka.tls.caSecret" . }}
    {{- $clientCert := include "leadstream.kafka.tls.clientCert" . }}
    - name: kafka-tls
      projected:
        defaultMode: 288 # 0440: owner root, group podSecurityContext.fsGroup
        sources:
          {{- if and $clientCert (ne $caSecret $tls.existingSecret) }}
          - secret:
              name: {{ $tls.existingSecret }}
              items:
                - key: {{ $tls.certKey }}
                  path: tls.crt
                - key: {{ $tls.keyKey }}
                  path: tls.key
          {{- end }}
          {{- if $caSecret }}
          - secret:
              name: {{ $caSecret }}
              items:
                - key: {{ $tls.caKey }}
                  path: ca.crt
                {{- if and $clientCert (eq $caSecret $tls.existingSecret) }}
                - key: {{ $tls.certKey }}
                  path: tls.crt
                - key: {{ $tls.keyKey }}
                  path: tls.key
                {{- end }}
          {{- end }}
    {{- end }}
    {{- with .Values.schemaRegistry.tls.existingSecret }}
    - name: schema-registry-tls
      secret:
        secretName: {{ . }}
        defaultMode: 288 # 0440
        items:
          - key: {{ $.Values.schemaRegistry.tls.caKey }}
            path: ca.crt
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
