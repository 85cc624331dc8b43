{{/*
Names, labels and the per-component configuration every template shares.
Helpers are called `offload.<thing>`; those that need more than the root take a dict.
*/}}

{{- define "offload.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "offload.fullname" -}}
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

{{/* The components, in the order they are rendered. */}}
{{- define "offload.componentKeys" -}}
gateway status workerOcr workerLlm
{{- end -}}

{{/* Component key (values) -> component name (objects, labels): workerOcr -> worker-ocr. */}}
{{- define "offload.slug" -}}
{{- . | kebabcase -}}
{{- end -}}

{{/* dict root key: the object name of a component, e.g. myrel-offload-worker-ocr. */}}
{{- define "offload.componentFullname" -}}
{{- printf "%s-%s" (include "offload.fullname" .root | trunc 50 | trimSuffix "-") (include "offload.slug" .key) -}}
{{- end -}}

{{/* Labels every object carries. dict root component */}}
{{- define "offload.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "offload.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: offload
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels: never values a user can change after install. dict root component */}}
{{- define "offload.selectorLabels" -}}
app.kubernetes.io/name: {{ include "offload.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/*
dict root key: a component's effective values, `default:` overlaid with `components.<key>`,
as YAML (use with fromYaml). Maps are merged key by key; anything else is replaced.
*/}}
{{- define "offload.config" -}}
{{- $merged := deepCopy .root.Values.default -}}
{{- include "offload.deepMerge" (dict "dst" $merged "src" (deepCopy (index .root.Values.components .key))) -}}
{{- $merged | toYaml -}}
{{- end -}}

{{/*
dict dst src: merge src into dst in place, maps recursively, everything else replaced. (Sprig's
mergeOverwrite cannot set a value to false, 0 or "": it treats them as absent.)
*/}}
{{- define "offload.deepMerge" -}}
{{- $dst := .dst -}}
{{- range $k, $v := .src -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) -}}
{{- include "offload.deepMerge" (dict "dst" (get $dst $k) "src" $v) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* dict root image(default+component image values): registry/repository:tag or @digest */}}
{{- define "offload.image" -}}
{{- $repo := .image.repository -}}
{{- with .image.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the workers are scaled by KEDA: enabled and the API is served. */}}
{{- define "offload.kedaActive" -}}
{{- if and .Values.keda.enabled (.Capabilities.APIVersions.Has "keda.sh/v1alpha1") -}}true{{- end -}}
{{- end -}}

{{/* The job type a worker runs: workerOcr -> ocr. */}}
{{- define "offload.jobType" -}}
{{- . | trimPrefix "worker" | lower -}}
{{- end -}}

{{/* dict root key: a worker's grace period, at least its hard time limit (scale-in drains). */}}
{{- define "offload.graceSeconds" -}}
{{- $c := index .root.Values.components .key -}}
{{- $limits := index .root.Values.config (include "offload.jobType" .key) -}}
{{- if kindIs "invalid" $c.terminationGracePeriodSeconds -}}
{{- add $limits.hardTimeLimitSeconds (int .root.Values.config.workerShutdownTimeoutSeconds) 30 -}}
{{- else -}}
{{- $c.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{- define "offload.configMapName" -}}
{{- printf "%s-config" (include "offload.fullname" .) -}}
{{- end -}}

{{- define "offload.apiKeysSecretName" -}}
{{- default (printf "%s-api-keys" (include "offload.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "offload.webhookSecretName" -}}
{{- default (printf "%s-webhook-secrets" (include "offload.fullname" .)) .Values.auth.webhookSecrets.existingSecret -}}
{{- end -}}

{{- define "offload.redisFullname" -}}
{{- printf "%s-redis" (include "offload.fullname" .) -}}
{{- end -}}

{{- define "offload.redisSecretName" -}}
{{- default (include "offload.redisFullname" .) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{/* host:port of Redis as KEDA sees it: the apps' URL is built from the same values. */}}
{{- define "offload.redisAddress" -}}
{{- if .Values.redis.enabled -}}
{{- printf "%s.%s.svc:6379" (include "offload.redisFullname" .) .Release.Namespace -}}
{{- else -}}
{{- printf "%s:%v" .Values.externalRedis.host (int .Values.externalRedis.port) -}}
{{- end -}}
{{- end -}}

{{- define "offload.redisPort" -}}
{{- if .Values.redis.enabled -}}6379{{- else -}}{{- int .Values.externalRedis.port -}}{{- end -}}
{{- end -}}

{{/* Where a private Redis CA is mounted in the app containers. */}}
{{- define "offload.redisCaDir" -}}/etc/offload/redis-ca{{- end -}}

{{/* The Secret and key of the Redis password, or nothing when Redis has none. dict: name key */}}
{{- define "offload.redisPasswordRef" -}}
{{- if .Values.redis.enabled -}}
{{- dict "name" (include "offload.redisSecretName" .) "key" .Values.redis.auth.existingSecretKey | toYaml -}}
{{- else if .Values.externalRedis.password.existingSecret -}}
{{- dict "name" .Values.externalRedis.password.existingSecret "key" .Values.externalRedis.password.key | toYaml -}}
{{- end -}}
{{- end -}}

{{/*
The apps' Redis URL, from the same values KEDA's triggers use. The password is expanded by the
kubelet from REDIS_PASSWORD (declared first), so it never sits in the pod spec.
*/}}
{{- define "offload.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "offload.redisFullname" .) -}}
{{- else -}}
{{- $r := .Values.externalRedis -}}
{{- $user := $r.username -}}
{{- if $r.password.existingSecret }}{{ $user = printf "%s:$(REDIS_PASSWORD)" $user }}{{ end -}}
{{- printf "%s://%s%s:%v/%v" (ternary "rediss" "redis" $r.tls.enabled) (ternary (printf "%s@" $user) "" (ne $user "")) $r.host (int $r.port) (int $r.database) -}}
{{- end -}}
{{- end -}}

{{/*
A Kubernetes quantity (512Mi, 1Gi, 1G, 1500M, 268435456) in bytes, as an integer string.
*/}}
{{- define "offload.bytes" -}}
{{- $q := toString . -}}
{{- $number := $q -}}
{{- $factor := 1.0 -}}
{{- range $unit, $f := dict "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 -}}
{{- if hasSuffix $unit $q -}}{{- $number = trimSuffix $unit $q -}}{{- $factor = $f -}}{{- end -}}
{{- end -}}
{{- mulf (float64 $number) $factor | floor | int64 -}}
{{- end -}}

{{/* The bundled Redis's maxmemory: the value, or a share of the memory limit. Empty when neither. */}}
{{- define "offload.redisMaxmemory" -}}
{{- $r := .Values.redis -}}
{{- if $r.maxmemory -}}
{{- $r.maxmemory -}}
{{- else if (($r.resources).limits).memory -}}
{{- div (mul (include "offload.bytes" $r.resources.limits.memory | int64) (int64 $r.maxmemoryPercent)) 100 -}}
{{- end -}}
{{- end -}}

{{/* dict root key: the ServiceAccount a component's pods run as. */}}
{{- define "offload.serviceAccountName" -}}
{{- $sa := (include "offload.config" . | fromYaml).serviceAccount -}}
{{- if $sa.name -}}
{{- $sa.name -}}
{{- else if $sa.create -}}
{{- include "offload.componentFullname" . -}}
{{- else -}}
default
{{- end -}}
{{- end -}}

{{/*
dict root peers: a NetworkPolicy `to:` list. Empty peers mean "anywhere but blockedCidrs", split
by address family, so that no rule opens the cloud metadata address by leaving `to:` out.
*/}}
{{- define "offload.egressPeers" -}}
{{- if .peers -}}
{{- toYaml .peers -}}
{{- else -}}
{{- $v4 := list -}}{{- $v6 := list -}}
{{- range .root.Values.networkPolicy.blockedCidrs -}}
{{- if contains ":" . }}{{ $v6 = append $v6 . }}{{ else }}{{ $v4 = append $v4 . }}{{ end -}}
{{- end -}}
{{- $v4block := dict "cidr" "0.0.0.0/0" -}}{{- with $v4 }}{{ $_ := set $v4block "except" . }}{{ end -}}
{{- $v6block := dict "cidr" "::/0" -}}{{- with $v6 }}{{ $_ := set $v6block "except" . }}{{ end -}}
{{- list (dict "ipBlock" $v4block) (dict "ipBlock" $v6block) | toYaml -}}
{{- end -}}
{{- end -}}

{{/* The port of a URL: its own, else the scheme's (https 443, http 80). */}}
{{- define "offload.urlPort" -}}
{{- $u := urlParse . -}}
{{- $hostPort := splitList ":" $u.host -}}
{{- if gt (len $hostPort) 1 -}}
{{- last $hostPort -}}
{{- else -}}
{{- ternary "443" "80" (eq $u.scheme "https") -}}
{{- end -}}
{{- end -}}

{{/* "true" when a ServiceMonitor can be made: asked for, and the Prometheus operator's API served. */}}
{{- define "offload.serviceMonitorActive" -}}
{{- if and .Values.metrics.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") -}}true{{- end -}}
{{- end -}}

{{/* Where clients follow their jobs (the gateway's Location header). */}}
{{- define "offload.statusPublicUrl" -}}
{{- if .Values.config.statusPublicUrl -}}
{{- .Values.config.statusPublicUrl -}}
{{- else if and .Values.ingress.enabled .Values.ingress.statusHost -}}
{{- $tls := false -}}
{{- range .Values.ingress.tls }}{{ if has $.Values.ingress.statusHost .hosts }}{{ $tls = true }}{{ end }}{{ end -}}
{{- printf "%s://%s" (ternary "https" "http" $tls) .Values.ingress.statusHost -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%v" (include "offload.componentFullname" (dict "root" . "key" "status")) .Release.Namespace .Values.components.status.service.port -}}
{{- end -}}
{{- end -}}

{{/* Where browsers reach the gateway (the dashboard calls it; CORS allows the status origin). */}}
{{- define "offload.gatewayPublicUrl" -}}
{{- if .Values.config.gatewayPublicUrl -}}
{{- .Values.config.gatewayPublicUrl -}}
{{- else if and .Values.ingress.enabled .Values.ingress.gatewayHost -}}
{{- $tls := false -}}
{{- range .Values.ingress.tls }}{{ if has $.Values.ingress.gatewayHost .hosts }}{{ $tls = true }}{{ end }}{{ end -}}
{{- printf "%s://%s" (ternary "https" "http" $tls) .Values.ingress.gatewayHost -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%v" (include "offload.componentFullname" (dict "root" . "key" "gateway")) .Release.Namespace .Values.components.gateway.service.port -}}
{{- end -}}
{{- end -}}

{{/*
dict root name key default: the value kept in this release's Secret `name` under `key`, or
`default` when there is none yet. Generated secrets survive upgrades this way.
*/}}
{{- define "offload.keptSecretValue" -}}
{{- $secret := lookup "v1" "Secret" .root.Release.Namespace .name -}}
{{- if and $secret $secret.data (hasKey $secret.data .key) -}}
{{- index $secret.data .key | b64dec -}}
{{- else -}}
{{- .default -}}
{{- end -}}
{{- end -}}

{{/* Environment every Offload container gets: Redis, telemetry identity. dict root key */}}
{{- define "offload.commonEnv" -}}
{{- $root := .root -}}
{{- with include "offload.redisPasswordRef" $root | fromYaml }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- toYaml . | nindent 6 }}
{{- end }}
- name: OFFLOAD_REDIS_URL
  value: {{ include "offload.redisUrl" $root | quote }}
{{- if and (not $root.Values.redis.enabled) $root.Values.externalRedis.tls.caSecret }}
- name: OFFLOAD_REDIS_CA_FILE
  value: {{ printf "%s/%s" (include "offload.redisCaDir" $root) $root.Values.externalRedis.tls.caKey | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "offload-%s" (include "offload.slug" .key) }}
- name: K8S_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- $attrs := list "k8s.pod.name=$(K8S_POD_NAME)" "k8s.namespace.name=$(K8S_NAMESPACE)" (printf "service.version=%s" $root.Chart.AppVersion) }}
{{- range $k, $v := $root.Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%v" $k $v) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end -}}

{{/* Pod labels: selector labels, the chart's labels and the user's. dict root component podLabels */}}
{{- define "offload.podLabels" -}}
{{ include "offload.labels" . }}
{{- with .podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Every values check that a schema cannot express, gathered into one failure that lists them all.
*/}}
{{- define "offload.validate" -}}
{{- $v := .Values -}}
{{- $problems := list -}}
{{- range $jt := list "ocr" "llm" -}}
{{- $l := index $v.config $jt -}}
{{- if ge (int $l.softTimeLimitSeconds) (int $l.hardTimeLimitSeconds) -}}
{{- $problems = append $problems (printf "config.%s.softTimeLimitSeconds (%v) must be below config.%s.hardTimeLimitSeconds (%v)" $jt $l.softTimeLimitSeconds $jt $l.hardTimeLimitSeconds) -}}
{{- end -}}
{{- if le (int $v.config.visibilityTimeoutSeconds) (int $l.hardTimeLimitSeconds) -}}
{{- $problems = append $problems (printf "config.visibilityTimeoutSeconds (%v) must exceed config.%s.hardTimeLimitSeconds (%v), or long jobs run twice" $v.config.visibilityTimeoutSeconds $jt $l.hardTimeLimitSeconds) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "workerOcr" "workerLlm" -}}
{{- $c := index $v.components $key -}}
{{- $hard := (index $v.config (include "offload.jobType" $key)).hardTimeLimitSeconds -}}
{{- if and (not (kindIs "invalid" $c.terminationGracePeriodSeconds)) (lt (int $c.terminationGracePeriodSeconds) (int $hard)) -}}
{{- $problems = append $problems (printf "components.%s.terminationGracePeriodSeconds (%v) must be at least config.%s.hardTimeLimitSeconds (%v), or scale-in kills running jobs" $key $c.terminationGracePeriodSeconds (include "offload.jobType" $key) $hard) -}}
{{- end -}}
{{- $grace := include "offload.graceSeconds" (dict "root" $ "key" $key) | int -}}
{{- if gt $grace (int $v.drain.maxGracePeriodSeconds) -}}
{{- $problems = append $problems (printf "components.%s: its grace period (%v s) exceeds drain.maxGracePeriodSeconds (%v s), so cluster-autoscaler would kill running jobs: lower config.%s.hardTimeLimitSeconds (or workerShutdownTimeoutSeconds), or raise drain.maxGracePeriodSeconds if your autoscaler's --max-graceful-termination-sec allows it" $key $grace $v.drain.maxGracePeriodSeconds (include "offload.jobType" $key)) -}}
{{- end -}}
{{- if gt (int $c.autoscaling.minReplicaCount) (int $c.autoscaling.maxReplicaCount) -}}
{{- $problems = append $problems (printf "components.%s.autoscaling.minReplicaCount (%v) must not exceed maxReplicaCount (%v)" $key $c.autoscaling.minReplicaCount $c.autoscaling.maxReplicaCount) -}}
{{- end -}}
{{- end -}}
{{- $server := $v.components.workerLlm.inferenceServer.autoscaling -}}
{{- if $server.enabled -}}
{{- if not $server.deploymentName -}}
{{- $problems = append $problems "components.workerLlm.inferenceServer.autoscaling.enabled needs deploymentName (the inference server's Deployment)" -}}
{{- end -}}
{{- if gt (int $server.minReplicaCount) (int $server.maxReplicaCount) -}}
{{- $problems = append $problems (printf "components.workerLlm.inferenceServer.autoscaling.minReplicaCount (%v) must not exceed maxReplicaCount (%v)" $server.minReplicaCount $server.maxReplicaCount) -}}
{{- end -}}
{{- end -}}
{{- if and $v.config.llm.models (not (hasKey $v.config.llm.models $v.config.llm.model)) -}}
{{- $problems = append $problems (printf "config.llm.model (%s), the model of jobs that name none, must be one of config.llm.models" $v.config.llm.model) -}}
{{- end -}}
{{- range $key := list "gateway" "status" -}}
{{- $c := index $v.components $key -}}
{{- if le (int $c.terminationGracePeriodSeconds) (add $c.preStopSleepSeconds $c.gracefulShutdownSeconds | int) -}}
{{- $problems = append $problems (printf "components.%s.terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + gracefulShutdownSeconds (%v + %v), or open requests are cut off" $key $c.terminationGracePeriodSeconds $c.preStopSleepSeconds $c.gracefulShutdownSeconds) -}}
{{- end -}}
{{- if eq (int $c.port) (int $c.metricsPort) -}}
{{- $problems = append $problems (printf "components.%s.metricsPort must differ from its port (%v): metrics are served apart from the API" $key $c.port) -}}
{{- end -}}
{{- end -}}
{{- if $v.redis.enabled -}}
{{- if not (include "offload.redisMaxmemory" .) -}}
{{- $problems = append $problems "redis: set redis.resources.limits.memory (maxmemory is derived from it) or redis.maxmemory: without a bound Redis grows until the kernel kills it" -}}
{{- end -}}
{{- else if not $v.externalRedis.host -}}
{{- $problems = append $problems "redis.enabled=false needs externalRedis.host (and port, database, tls, password): the services and KEDA both connect there" -}}
{{- end -}}
{{- if $v.ingress.enabled -}}
{{- if not $v.ingress.gatewayHost -}}
{{- $problems = append $problems "ingress.enabled needs ingress.gatewayHost" -}}
{{- end -}}
{{- if and $v.ingress.statusHost (eq $v.ingress.statusHost $v.ingress.gatewayHost) -}}
{{- $problems = append $problems "ingress.statusHost must differ from ingress.gatewayHost: both serve /v1/jobs" -}}
{{- end -}}
{{- end -}}
{{- if $v.tests.enabled -}}
{{- $worker := ternary "workerOcr" "workerLlm" (eq $v.tests.jobType "ocr") -}}
{{- range $needed := list "gateway" "status" $worker -}}
{{- if not (index $v.components $needed).enabled -}}
{{- $problems = append $problems (printf "tests.enabled with tests.jobType=%s needs components.%s.enabled (or set tests.enabled=false)" $v.tests.jobType $needed) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $problems = concat $problems (include "offload.payloadProblems" . | fromYamlArray) -}}
{{- if $problems -}}
{{- fail (printf "\n\nThe values need fixing:\n  - %s\n" (join "\n  - " $problems)) -}}
{{- end -}}
{{- end -}}

{{/*
dict root key: the jobs one worker pod runs at once. The LLM worker's openai backend keeps
config.llm.maxInFlight streams on threads; llamacpp runs `concurrency` processes. An empty
backend is the image's own: the default image's openai (set `llamacpp` with the -llamacpp image).
*/}}
{{- define "offload.podCapacity" -}}
{{- $c := index .root.Values.components .key -}}
{{- if and (eq .key "workerLlm") (ne $c.llm.backend "llamacpp") -}}
{{- .root.Values.config.llm.maxInFlight | int -}}
{{- else -}}
{{- $c.concurrency | int -}}
{{- end -}}
{{- end -}}

{{/*
The job types a worker is scaled on, space-separated: those it runs, except that only the OCR
worker is woken for probes (offload_core.queue.scaling.scaled_types says the same).
*/}}
{{- define "offload.scaledJobTypes" -}}
{{- ternary "ocr probe" "llm embed" (eq . "ocr") -}}
{{- end -}}

{{/* "true" when the ScaledObjects count running jobs: asked for, and a status service to ask. */}}
{{- define "offload.countsRunningJobs" -}}
{{- if and .Values.keda.runningJobs.enabled .Values.components.status.enabled -}}true{{- end -}}
{{- end -}}

{{/* Where KEDA reads /scaling/<type>: the status Service's metrics port, unless told otherwise. */}}
{{- define "offload.statusScalingUrl" -}}
{{- with .Values.keda.runningJobs.statusUrl -}}
{{- . -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%v" (include "offload.componentFullname" (dict "root" . "key" "status")) .Release.Namespace .Values.components.status.metricsPort -}}
{{- end -}}
{{- end -}}

{{- define "offload.kedaAuthName" -}}
{{- printf "%s-redis-keda" (include "offload.fullname" .) -}}
{{- end -}}
