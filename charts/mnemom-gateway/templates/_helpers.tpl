{{/* ---------------------------------------------------------------- names and labels */}}

{{- define "mnemom-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: `<release>-<chart>`, or the release name alone when it already contains the chart
name. With release `smoltbot` the gateway Deployment is `smoltbot-mnemom-gateway-gateway`.
*/}}
{{- define "mnemom-gateway.fullname" -}}
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

{{/* `<fullname>-<suffix>`, kept within 63 characters (Service and label-value limit). */}}
{{- define "mnemom-gateway.componentName" -}}
{{- printf "%s-%s" (include "mnemom-gateway.fullname" .root) .suffix | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mnemom-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mnemom-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mnemom-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mnemom-gateway.labels" -}}
helm.sh/chart: {{ include "mnemom-gateway.chart" . }}
{{ include "mnemom-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ include "mnemom-gateway.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mnemom-gateway
{{- end }}

{{/* Labels of one component: include "mnemom-gateway.componentLabels" (dict "root" $ "component" "gateway") */}}
{{- define "mnemom-gateway.componentLabels" -}}
{{ include "mnemom-gateway.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mnemom-gateway.componentSelectorLabels" -}}
{{ include "mnemom-gateway.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mnemom-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mnemom-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- images */}}

{{- define "mnemom-gateway.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "mnemom-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "mnemom-gateway.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "mnemom-gateway.migrationImage" -}}
{{- $repo := default .Values.image.repository .Values.migration.image.repository }}
{{- if and (not .Values.migration.image.repository) (not .Values.migration.image.tag) .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default (include "mnemom-gateway.imageTag" .) .Values.migration.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the Dockerfile installs the binary; the chart always sets `command` explicitly. */}}
{{- define "mnemom-gateway.binary" -}}
/usr/local/bin/mnemom-gateway
{{- end }}

{{/* ---------------------------------------------------------------- port */}}

{{/* The one port the pods listen on: `config.PORT` (a string or a number). */}}
{{- define "mnemom-gateway.port" -}}
{{- $port := toString (default "8787" .Values.config.PORT) }}
{{- if not (regexMatch "^[0-9]+$" $port) }}
{{- fail (printf "config.PORT must be a port number, got %q" $port) }}
{{- end }}
{{- if or (lt (atoi $port) 1) (gt (atoi $port) 65535) }}
{{- fail (printf "config.PORT must be between 1 and 65535, got %s" $port) }}
{{- end }}
{{- atoi $port }}
{{- end }}

{{/* ---------------------------------------------------------------- secrets */}}

{{/* The non-empty inline secret values, as a dict. */}}
{{- define "mnemom-gateway.inlineSecrets" -}}
{{- $out := dict }}
{{- range $k, $v := .Values.secrets.values }}
{{- if and (not (kindIs "invalid" $v)) (ne (toString $v) "") }}
{{- $_ := set $out $k (toString $v) }}
{{- end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* Fails on contradictory settings; included by every workload template. */}}
{{- define "mnemom-gateway.validate" -}}
{{- $inline := include "mnemom-gateway.inlineSecrets" . | fromJson }}
{{- if and .Values.secrets.existingSecret (gt (len $inline) 0) }}
{{- fail (printf "secrets.existingSecret (%s) and secrets.values (%s) are alternatives: set one of them" .Values.secrets.existingSecret (keys $inline | sortAlpha | join ", ")) }}
{{- end }}
{{- $role := lower (toString .Values.config.SMOLTBOT_ROLE) }}
{{- if not (has $role (list "gateway" "all")) }}
{{- fail (printf "config.SMOLTBOT_ROLE is the role of the gateway Deployment and must be gateway or all, got %q (the observer Deployment always runs the observer role)" $role) }}
{{- end }}
{{- $_ := include "mnemom-gateway.port" . }}
{{- end }}

{{/* The Secret the pods read with envFrom: the existing one, the chart's, or none ("") when there is nothing to hold. */}}
{{- define "mnemom-gateway.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else if gt (len (include "mnemom-gateway.inlineSecrets" . | fromJson)) 0 }}
{{- include "mnemom-gateway.fullname" . }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- datastores */}}

{{/*
Where REDIS_URL comes from, in order of precedence:
  inline   secrets.values.REDIS_URL (the chart Secret, envFrom)
  external redis.externalUrl (the `<fullname>-datastores` Secret)
  internal redis.enabled: the chart's StatefulSet
  none     unset (the gateway uses its in-process cache; with secrets.existingSecret, that Secret may set it)
*/}}
{{- define "mnemom-gateway.redis.mode" -}}
{{- if and (not .Values.secrets.existingSecret) .Values.secrets.values.REDIS_URL }}inline
{{- else if .Values.redis.externalUrl }}external
{{- else if .Values.redis.enabled }}internal
{{- else }}none
{{- end }}
{{- end }}

{{/* Same for DATABASE_URL: inline, external, internal, none. */}}
{{- define "mnemom-gateway.postgresql.mode" -}}
{{- if and (not .Values.secrets.existingSecret) .Values.secrets.values.DATABASE_URL }}inline
{{- else if .Values.postgresql.externalUrl }}external
{{- else if .Values.postgresql.enabled }}internal
{{- else }}none
{{- end }}
{{- end }}

{{- define "mnemom-gateway.redis.fullname" -}}
{{- include "mnemom-gateway.componentName" (dict "root" . "suffix" "redis") }}
{{- end }}

{{- define "mnemom-gateway.postgresql.fullname" -}}
{{- include "mnemom-gateway.componentName" (dict "root" . "suffix" "postgresql") }}
{{- end }}

{{- define "mnemom-gateway.redis.secretName" -}}
{{- default (include "mnemom-gateway.redis.fullname" .) .Values.redis.auth.existingSecret }}
{{- end }}

{{- define "mnemom-gateway.redis.secretKey" -}}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretPasswordKey }}{{ else }}password{{ end }}
{{- end }}

{{- define "mnemom-gateway.postgresql.secretName" -}}
{{- default (include "mnemom-gateway.postgresql.fullname" .) .Values.postgresql.auth.existingSecret }}
{{- end }}

{{- define "mnemom-gateway.postgresql.secretKey" -}}
{{- if .Values.postgresql.auth.existingSecret }}{{ .Values.postgresql.auth.existingSecretPasswordKey }}{{ else }}password{{ end }}
{{- end }}

{{/*
A password for a chart-owned credentials Secret: the value given, else the one already in the
cluster (so upgrades keep it), else a new random one. Called once per Secret template.
*/}}
{{- define "mnemom-gateway.password" -}}
{{- if .given }}
{{- .given }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret }}
{{- if and $existing $existing.data (hasKey $existing.data "password") }}
{{- index $existing.data "password" | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mnemom-gateway.redis.url" -}}
{{- if .Values.redis.auth.enabled -}}
redis://:$(MNEMOM_REDIS_PASSWORD)@{{ include "mnemom-gateway.redis.fullname" . }}:6379
{{- else -}}
redis://{{ include "mnemom-gateway.redis.fullname" . }}:6379
{{- end }}
{{- end }}

{{- define "mnemom-gateway.postgresql.url" -}}
postgres://{{ .Values.postgresql.auth.username }}:$(MNEMOM_POSTGRES_PASSWORD)@{{ include "mnemom-gateway.postgresql.fullname" . }}:5432/{{ .Values.postgresql.auth.database }}?sslmode=disable
{{- end }}

{{/* Env entries wiring DATABASE_URL (and its password) for the internal PostgreSQL. */}}
{{- define "mnemom-gateway.postgresql.env" -}}
- name: MNEMOM_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mnemom-gateway.postgresql.secretName" . }}
      key: {{ include "mnemom-gateway.postgresql.secretKey" . }}
- name: DATABASE_URL
  value: {{ include "mnemom-gateway.postgresql.url" . | quote }}
{{- end }}

{{/* Env entries of the gateway and observer containers for REDIS_URL and DATABASE_URL. */}}
{{- define "mnemom-gateway.datastoreEnv" -}}
{{- $redis := include "mnemom-gateway.redis.mode" . }}
{{- $pg := include "mnemom-gateway.postgresql.mode" . }}
{{- if eq $redis "external" }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "mnemom-gateway.componentName" (dict "root" . "suffix" "datastores") }}
      key: REDIS_URL
{{- else if eq $redis "internal" }}
{{- if .Values.redis.auth.enabled }}
- name: MNEMOM_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mnemom-gateway.redis.secretName" . }}
      key: {{ include "mnemom-gateway.redis.secretKey" . }}
{{- end }}
- name: REDIS_URL
  value: {{ include "mnemom-gateway.redis.url" . | quote }}
{{- end }}
{{- if eq $pg "external" }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "mnemom-gateway.componentName" (dict "root" . "suffix" "datastores") }}
      key: DATABASE_URL
{{- else if eq $pg "internal" }}
{{ include "mnemom-gateway.postgresql.env" . }}
{{- end }}
{{- end }}

{{/* The TCP port of a datastore URL (`scheme://user:pass@host:port/…`), or the default. */}}
{{- define "mnemom-gateway.urlPort" -}}
{{- $hostport := (urlParse .url).host }}
{{- $m := regexFind ":[0-9]+$" $hostport }}
{{- if $m }}{{ trimPrefix ":" $m }}{{ else }}{{ .default }}{{ end }}
{{- end }}

{{/*
TCP ports of a PostgreSQL outside the release, as a JSON list: 5432, plus the port of an inline
or external URL.
*/}}
{{- define "mnemom-gateway.postgresql.externalPorts" -}}
{{- $pg := include "mnemom-gateway.postgresql.mode" . }}
{{- $ports := list 5432 }}
{{- $url := ternary .Values.secrets.values.DATABASE_URL .Values.postgresql.externalUrl (eq $pg "inline") }}
{{- if and (has $pg (list "inline" "external")) $url }}
{{- $ports = append $ports (include "mnemom-gateway.urlPort" (dict "url" $url "default" "5432") | atoi) | uniq }}
{{- end }}
{{- toJson $ports }}
{{- end }}

{{/* Is there a database for the migration Job? */}}
{{- define "mnemom-gateway.migration.enabled" -}}
{{- if and .Values.migration.enabled (or (ne (include "mnemom-gateway.postgresql.mode" .) "none") .Values.secrets.existingSecret) }}true{{ end }}
{{- end }}

{{/*
Hook phases of the migration Job and its hook-owned copies.

A database that exists before the release (external, inline, or from secrets.existingSecret) is
migrated pre-install and pre-upgrade, before any new pod starts. The internal PostgreSQL is an
ordinary release resource: on a first install it does not exist during pre-install, and a
post-install hook would deadlock `helm install --wait` (Helm runs post-install hooks only after
the pods are ready, and `serve` refuses to start on an un-migrated PostgreSQL schema). So with
the internal PostgreSQL the Job runs pre-upgrade only, and the gateway and observer pods migrate
it themselves in an init container ("mnemom-gateway.migration.initContainers").
*/}}
{{- define "mnemom-gateway.migration.hook" -}}
{{- if eq (include "mnemom-gateway.postgresql.mode" .) "internal" }}pre-upgrade{{ else }}pre-install,pre-upgrade{{ end }}
{{- end }}

{{/*
Do the gateway and observer pods migrate the internal PostgreSQL in init containers (wait for it,
then `mnemom-gateway migrate`)? `migrate` is idempotent and serializes concurrent runs on an
advisory lock, so every pod may run it; all but the first find nothing to do.
*/}}
{{- define "mnemom-gateway.migration.initContainers" -}}
{{- if and .Values.migration.enabled (eq (include "mnemom-gateway.postgresql.mode" .) "internal") }}true{{ end }}
{{- end }}

{{/* The migration container's command: migration.command, or the gateway binary. */}}
{{- define "mnemom-gateway.migration.command" -}}
{{- if .Values.migration.command }}
{{- toYaml .Values.migration.command }}
{{- else -}}
- {{ include "mnemom-gateway.binary" . }}
{{- end }}
{{- end }}

{{/*
An init container that waits until the internal PostgreSQL accepts connections (pg_isready from
the PostgreSQL image; it does not log in). Used by the migration Job and, with the internal
PostgreSQL, by the gateway and observer pods before their `migrate` init container.
*/}}
{{- define "mnemom-gateway.waitForPostgresql" -}}
- name: wait-for-postgresql
  image: {{ printf "%s:%s" .Values.postgresql.image.repository .Values.postgresql.image.tag }}
  imagePullPolicy: {{ .Values.postgresql.image.pullPolicy }}
  command:
    - sh
    - -c
    - until pg_isready -h "$PGHOST" -p 5432 -U "$PGUSER" -d "$PGDATABASE" -t 3; do sleep 2; done
  env:
    - name: PGHOST
      value: {{ include "mnemom-gateway.postgresql.fullname" . }}
    - name: PGUSER
      value: {{ .Values.postgresql.auth.username | quote }}
    - name: PGDATABASE
      value: {{ .Values.postgresql.auth.database | quote }}
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      cpu: 100m
      memory: 64Mi
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
{{- end }}

{{/* ---------------------------------------------------------------- plugins */}}

{{/*
Every plugin ConfigMap the pods mount, in MNEMOM_PLUGIN_DIRS order, as a JSON list of
{name, volume, mountPath}; the directory is `<plugins.mountPath>/<short name>`: chart files (plugins/<dir>/…), plugins.configMaps, plugins.existingConfigMaps.
*/}}
{{- define "mnemom-gateway.pluginConfigMaps" -}}
{{- $out := list }}
{{- $dirs := dict }}
{{- range $path, $_ := .Files.Glob "plugins/*/*" }}
{{- $_ := set $dirs (index (splitList "/" $path) 1) true }}
{{- end }}
{{- range $dir := keys $dirs | sortAlpha }}
{{- $out = append $out (dict "name" (include "mnemom-gateway.componentName" (dict "root" $ "suffix" (printf "plugins-%s" $dir))) "key" $dir) }}
{{- end }}
{{- range $name := keys .Values.plugins.configMaps | sortAlpha }}
{{- $out = append $out (dict "name" (include "mnemom-gateway.componentName" (dict "root" $ "suffix" (printf "plugins-%s" $name))) "key" $name) }}
{{- end }}
{{- range .Values.plugins.existingConfigMaps }}
{{- $out = append $out (dict "name" . "key" .) }}
{{- end }}
{{- $seen := dict }}
{{- $result := list }}
{{- range $i, $cm := $out }}
{{- if or (hasKey $seen $cm.name) (hasKey $seen (printf "dir:%s" $cm.key)) }}
{{- fail (printf "plugin ConfigMap %q (directory %q) is listed twice: chart files, plugins.configMaps and plugins.existingConfigMaps must not overlap" $cm.name $cm.key) }}
{{- end }}
{{- $_ := set $seen $cm.name true }}
{{- $_ := set $seen (printf "dir:%s" $cm.key) true }}
{{- $result = append $result (dict "name" $cm.name "volume" (printf "plugins-%d" $i) "mountPath" (printf "%s/%s" (trimSuffix "/" $.Values.plugins.mountPath) $cm.key)) }}
{{- end }}
{{- toJson $result }}
{{- end }}

{{/* ---------------------------------------------------------------- pod parts */}}

{{- define "mnemom-gateway.terminationGracePeriodSeconds" -}}
{{- if ne (toString .Values.shutdown.terminationGracePeriodSeconds) "" }}
{{- .Values.shutdown.terminationGracePeriodSeconds }}
{{- else }}
{{- add .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainSeconds 10 }}
{{- end }}
{{- end }}

{{/* An httpGet probe on the named port from probes.<kind>. */}}
{{- define "mnemom-gateway.probe" -}}
httpGet:
  path: {{ .probe.path }}
  port: http
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}

{{/* Pod annotations that roll the pods when configuration changes (not plugins: those hot-reload). */}}
{{- define "mnemom-gateway.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
checksum/datastores: {{ printf "%s|%s|%s" (include (print .Template.BasePath "/secret-datastores.yaml") .) (include "mnemom-gateway.datastoreEnv" .) (toJson (list .Values.redis.auth .Values.postgresql.auth)) | sha256sum }}
{{- end }}

{{/*
The gateway/observer pod spec. Call with (dict "root" $ "component" "gateway"|"observer").
*/}}
{{- define "mnemom-gateway.podSpec" -}}
{{- $root := .root }}
{{- $component := .component }}
{{- $plugins := include "mnemom-gateway.pluginConfigMaps" $root | fromJsonArray }}
{{- $secretName := include "mnemom-gateway.secretName" $root }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "mnemom-gateway.serviceAccountName" $root }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ include "mnemom-gateway.terminationGracePeriodSeconds" $root }}
{{- if and (eq $component "gateway") $root.Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range $root.Values.topologySpreadConstraints }}
  {{- $c := deepCopy . }}
  {{- if not (hasKey $c "labelSelector") }}
  {{- $_ := set $c "labelSelector" (dict "matchLabels" (include "mnemom-gateway.componentSelectorLabels" (dict "root" $root "component" "gateway") | fromYaml)) }}
  {{- end }}
  - {{ toYaml $c | indent 4 | trim }}
  {{- end }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if include "mnemom-gateway.migration.initContainers" $root }}
initContainers:
  {{- /* The internal PostgreSQL is created by the release: the pods migrate it before serving. */}}
  {{- include "mnemom-gateway.waitForPostgresql" $root | nindent 2 }}
  - name: migrate
    image: {{ include "mnemom-gateway.migrationImage" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command:
      {{- include "mnemom-gateway.migration.command" $root | nindent 6 }}
    args:
      {{- toYaml $root.Values.migration.args | nindent 6 }}
    envFrom:
      - configMapRef:
          name: {{ include "mnemom-gateway.fullname" $root }}
      {{- if $secretName }}
      - secretRef:
          name: {{ $secretName }}
      {{- end }}
    env:
      - name: MNEMOM_DATA_DIR
        value: {{ $root.Values.storage.data.mountPath | quote }}
      - name: TMPDIR
        value: /tmp
      {{- include "mnemom-gateway.postgresql.env" $root | nindent 6 }}
      {{- with $root.Values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- toYaml $root.Values.migration.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: data
        mountPath: {{ $root.Values.storage.data.mountPath }}
{{- end }}
containers:
  - name: {{ $component }}
    image: {{ include "mnemom-gateway.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command:
      - {{ include "mnemom-gateway.binary" $root }}
    args:
      - serve
    ports:
      - name: http
        containerPort: {{ include "mnemom-gateway.port" $root }}
        protocol: TCP
    envFrom:
      - configMapRef:
          name: {{ include "mnemom-gateway.fullname" $root }}
      {{- if $secretName }}
      - secretRef:
          name: {{ $secretName }}
      {{- end }}
    env:
      - name: SMOLTBOT_ROLE
        value: {{ ternary (lower (toString $root.Values.config.SMOLTBOT_ROLE)) "observer" (eq $component "gateway") | quote }}
      - name: PORT
        value: {{ include "mnemom-gateway.port" $root | quote }}
      - name: MNEMOM_DATA_DIR
        value: {{ $root.Values.storage.data.mountPath | quote }}
      - name: MNEMOM_PLUGIN_CACHE_DIR
        value: {{ $root.Values.storage.pluginCache.mountPath | quote }}
      - name: MNEMOM_SHUTDOWN_GRACE_SECONDS
        value: {{ $root.Values.shutdown.drainSeconds | quote }}
      - name: TMPDIR
        value: /tmp
      {{- if $plugins }}
      {{- $dirs := list }}
      {{- range $plugins }}{{ $dirs = append $dirs .mountPath }}{{ end }}
      - name: MNEMOM_PLUGIN_DIRS
        value: {{ join ":" $dirs | quote }}
      {{- end }}
      {{- with include "mnemom-gateway.datastoreEnv" $root | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- with $root.Values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- if $root.Values.probes.startup.enabled }}
    startupProbe:
      {{- include "mnemom-gateway.probe" (dict "probe" $root.Values.probes.startup) | nindent 6 }}
    {{- end }}
    {{- if $root.Values.probes.liveness.enabled }}
    livenessProbe:
      {{- include "mnemom-gateway.probe" (dict "probe" $root.Values.probes.liveness) | nindent 6 }}
    {{- end }}
    {{- if $root.Values.probes.readiness.enabled }}
    readinessProbe:
      {{- include "mnemom-gateway.probe" (dict "probe" $root.Values.probes.readiness) | nindent 6 }}
    {{- end }}
    {{- if gt (int $root.Values.shutdown.preStopSleepSeconds) 0 }}
    lifecycle:
      preStop:
        exec:
          command:
            - /bin/sleep
            - {{ $root.Values.shutdown.preStopSleepSeconds | quote }}
    {{- end }}
    resources:
      {{- toYaml (ternary $root.Values.resources $root.Values.observer.resources (eq $component "gateway")) | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: data
        mountPath: {{ $root.Values.storage.data.mountPath }}
      - name: plugin-cache
        mountPath: {{ $root.Values.storage.pluginCache.mountPath }}
      {{- range $plugins }}
      - name: {{ .volume }}
        mountPath: {{ .mountPath }}
        readOnly: true
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $root.Values.storage.tmp.sizeLimit }}
  - name: data
    emptyDir:
      sizeLimit: {{ $root.Values.storage.data.sizeLimit }}
  - name: plugin-cache
    emptyDir:
      sizeLimit: {{ $root.Values.storage.pluginCache.sizeLimit }}
  {{- range $plugins }}
  - name: {{ .volume }}
    configMap:
      name: {{ .name }}
      defaultMode: 0444
  {{- end }}
{{- end }}
