{{/*
A control-plane component's pod template metadata and proxy:
"linkerd.controller-pod-meta" (list $ "component").
*/}}
{{- define "linkerd.controller-pod-meta" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
metadata:
  annotations:
    linkerd.io/created-by: linkerd/helm {{ $root.Chart.AppVersion }}
    {{- include "linkerd.proxy-annotations" $root | nindent 4 }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    linkerd.io/control-plane-component: {{ $component }}
    linkerd.io/control-plane-ns: {{ $root.Release.Namespace }}
    linkerd.io/proxy-deployment: linkerd-{{ $component }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The selector and labels of a control-plane deployment: "linkerd.controller-deployment-meta" (list $ "component"). */}}
{{- define "linkerd.controller-deployment-meta" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
metadata:
  name: linkerd-{{ $component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    linkerd.io/control-plane-component: {{ $component }}
    {{- include "linkerd.labels" $root | nindent 4 }}
{{- end -}}

{{/* The proxy of a control-plane pod: "linkerd.controller-proxy" (list $ "local"). */}}
{{- define "linkerd.controller-proxy" -}}
{{- $root := index . 0 -}}
{{- include "linkerd.proxy" (dict "Values" $root.Values "Release" $root.Release "Chart" $root.Chart "local" (index . 1)) }}
{{- end -}}

{{/* A control-plane container's probes on its admin port. */}}
{{- define "linkerd.controller-probes" -}}
livenessProbe:
  httpGet:
    path: /live
    port: {{ . }}
  initialDelaySeconds: 10
readinessProbe:
  failureThreshold: 7
  httpGet:
    path: /ready
    port: {{ . }}
{{- end -}}
