{{/*
The image of one of this project's components: "linkerd.image" (list $ "name" .Values.x.image).
*/}}
{{- define "linkerd.image" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $override := index . 2 -}}
{{- $name := $override.name | default (printf "%s/%s" $root.Values.image.registry $component) -}}
{{- $tag := $override.version | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- printf "%s:%s" $name $tag -}}
{{- end -}}

{{/* The labels every object of the control plane carries. */}}
{{- define "linkerd.labels" -}}
linkerd.io/control-plane-ns: {{ .Release.Namespace }}
app.kubernetes.io/name: linkerd
app.kubernetes.io/part-of: linkerd
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* A workload identity: "linkerd.identity" (list $ "service-account" "namespace"). */}}
{{- define "linkerd.identity" -}}
{{- $root := index . 0 -}}
{{- printf "%s.%s.serviceaccount.identity.%s.%s" (index . 1) (index . 2) $root.Release.Namespace $root.Values.identityTrustDomain -}}
{{- end -}}

{{/* Requests and limits from {cpu: {request, limit}, memory: {...}}; nothing when all are empty. */}}
{{- define "linkerd.resources" -}}
{{- $r := . -}}
{{- if or $r.cpu.request $r.memory.request $r.cpu.limit $r.memory.limit }}
resources:
  {{- if or $r.cpu.limit $r.memory.limit }}
  limits:
    {{- with $r.cpu.limit }}
    cpu: {{ . | quote }}
    {{- end }}
    {{- with $r.memory.limit }}
    memory: {{ . | quote }}
    {{- end }}
  {{- end }}
  {{- if or $r.cpu.request $r.memory.request }}
  requests:
    {{- with $r.cpu.request }}
    cpu: {{ . | quote }}
    {{- end }}
    {{- with $r.memory.request }}
    memory: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* The security context of the control plane's own containers. */}}
{{- define "linkerd.controller-security" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop:
    - ALL
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  runAsUser: {{ .Values.controllerUID }}
  runAsGroup: {{ .Values.controllerGID }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/*
The pod-level settings of a control-plane deployment's pod template:
"linkerd.pod-spec" (list $ "component").
*/}}
{{- define "linkerd.pod-spec" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $root.Values.enablePodAntiAffinity }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
    - podAffinityTerm:
        labelSelector:
          matchLabels:
            linkerd.io/control-plane-component: {{ $component }}
        topologyKey: topology.kubernetes.io/zone
      weight: 100
    requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector:
        matchLabels:
          linkerd.io/control-plane-component: {{ $component }}
      topologyKey: kubernetes.io/hostname
{{- end }}
{{- end -}}
