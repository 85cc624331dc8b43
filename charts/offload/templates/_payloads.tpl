{{/*
The payload store (values `payloads`), wired into the gateway and both workers when it is
S3: the OFFLOAD_S3_* variables, the credentials Secret and the optional CA bundle mounted as
files, the egress to the endpoint. With `store: redis` nothing is rendered (the default).
*/}}

{{/* dict root key: "true" when this component talks to S3. */}}
{{- define "offload.usesS3" -}}
{{- if and (eq .root.Values.payloads.store "s3") (or (hasPrefix "worker" .key) (eq .key "gateway")) -}}true{{- end -}}
{{- end -}}

{{- define "offload.s3HasCa" -}}
{{- with .Values.payloads.s3.ca }}{{ if or .configMap .secret }}true{{ end }}{{ end -}}
{{- end -}}

{{/* dict root key: env entries. */}}
{{- define "offload.payloadEnv" -}}
{{- if include "offload.usesS3" . }}
{{- $p := .root.Values.payloads }}
- name: OFFLOAD_PAYLOAD_STORE
  value: s3
- name: OFFLOAD_PAYLOAD_S3_THRESHOLD_BYTES
  value: {{ $p.s3ThresholdBytes | int64 | quote }}
- name: OFFLOAD_S3_ENDPOINT_URL
  value: {{ $p.s3.endpointUrl | quote }}
- name: OFFLOAD_S3_BUCKET
  value: {{ $p.s3.bucket | quote }}
- name: OFFLOAD_S3_PREFIX
  value: {{ $p.s3.prefix | quote }}
- name: OFFLOAD_S3_REGION
  value: {{ $p.s3.region | quote }}
- name: OFFLOAD_S3_ADDRESSING
  value: {{ $p.s3.addressing | quote }}
- name: OFFLOAD_S3_ACCESS_KEY_ID_FILE
  value: /etc/offload/s3/access-key-id
- name: OFFLOAD_S3_SECRET_ACCESS_KEY_FILE
  value: /etc/offload/s3/secret-access-key
{{- if include "offload.s3HasCa" .root }}
- name: OFFLOAD_S3_CA_FILE
  value: /etc/offload/s3-ca/ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{/* dict root key: volumeMounts entries. */}}
{{- define "offload.payloadVolumeMounts" -}}
{{- if include "offload.usesS3" . }}
- name: s3-credentials
  mountPath: /etc/offload/s3
  readOnly: true
{{- if include "offload.s3HasCa" .root }}
- name: s3-ca
  mountPath: /etc/offload/s3-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* dict root key: volumes entries. */}}
{{- define "offload.payloadVolumes" -}}
{{- if include "offload.usesS3" . }}
{{- $s3 := .root.Values.payloads.s3 }}
- name: s3-credentials
  secret:
    secretName: {{ $s3.credentials.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $s3.credentials.accessKeyIdKey }}
        path: access-key-id
      - key: {{ $s3.credentials.secretAccessKeyKey }}
        path: secret-access-key
{{- with $s3.ca.secret }}
- name: s3-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
    items:
      - key: {{ $s3.ca.key }}
        path: ca.crt
{{- else }}
{{- with $s3.ca.configMap }}
- name: s3-ca
  configMap:
    name: {{ . }}
    defaultMode: 0444
    items:
      - key: {{ $s3.ca.key }}
        path: ca.crt
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* dict root key: a NetworkPolicy egress rule to the S3 endpoint's port. */}}
{{- define "offload.payloadEgress" -}}
{{- if include "offload.usesS3" . }}
# The payload store (S3).
- ports:
    - port: {{ include "offload.urlPort" .root.Values.payloads.s3.endpointUrl }}
      protocol: TCP
  to:
    {{- include "offload.egressPeers" (dict "root" .root "peers" .root.Values.networkPolicy.s3To) | nindent 4 }}
{{- end }}
{{- end -}}

{{/* The payload values' problems, as a YAML list (offload.validate reports them with the rest). */}}
{{- define "offload.payloadProblems" -}}
{{- $p := .Values.payloads -}}
{{- $problems := list -}}
{{- if eq $p.store "s3" -}}
{{- if not $p.s3.endpointUrl -}}
{{- $problems = append $problems "payloads.store=s3 needs payloads.s3.endpointUrl" -}}
{{- end -}}
{{- if not $p.s3.bucket -}}
{{- $problems = append $problems "payloads.store=s3 needs payloads.s3.bucket" -}}
{{- end -}}
{{- if not $p.s3.credentials.existingSecret -}}
{{- $problems = append $problems "payloads.store=s3 needs payloads.s3.credentials.existingSecret (a Secret with the access key id and secret access key)" -}}
{{- end -}}
{{- end -}}
{{- if and $p.s3.ca.configMap $p.s3.ca.secret -}}
{{- $problems = append $problems "payloads.s3.ca: set configMap or secret, not both" -}}
{{- end -}}
{{- toYaml $problems -}}
{{- end -}}
