{{/*
A component's ServiceAccount, and a ClusterRole bound to it that may read
what discovery watches: "linkerd.discovery-rbac" (list $ "component").
*/}}
{{- define "linkerd.discovery-rbac" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
kind: ServiceAccount
apiVersion: v1
metadata:
  name: linkerd-{{ $component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    linkerd.io/control-plane-component: {{ $component }}
    {{- include "linkerd.labels" $root | nindent 4 }}
---
kind: ClusterRole
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: linkerd-{{ $root.Release.Namespace }}-{{ $component }}
  labels:
    linkerd.io/control-plane-component: {{ $component }}
    {{- include "linkerd.labels" $root | nindent 4 }}
rules:
- apiGroups: [""]
  resources: ["pods", "services", "namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
{{- if eq $component "destination" }}
- apiGroups: ["linkerd.io"]
  resources: ["serviceprofiles"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["policy.linkerd.io"]
  resources: ["servers", "httproutes", "authorizationpolicies", "meshtlsauthentications", "networkauthentications"]
  verbs: ["get", "list", "watch"]
{{- end }}
---
kind: ClusterRoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  name: linkerd-{{ $root.Release.Namespace }}-{{ $component }}
  labels:
    linkerd.io/control-plane-component: {{ $component }}
    {{- include "linkerd.labels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: linkerd-{{ $root.Release.Namespace }}-{{ $component }}
subjects:
- kind: ServiceAccount
  name: linkerd-{{ $component }}
  namespace: {{ $root.Release.Namespace }}
{{- end -}}

{{/* A ClusterIP Service: "linkerd.service" (list $ "component" "name" port "port-name"). */}}
{{- define "linkerd.service" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
kind: Service
apiVersion: v1
metadata:
  name: {{ index . 2 }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    linkerd.io/control-plane-component: {{ $component }}
    {{- include "linkerd.labels" $root | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    linkerd.io/control-plane-component: {{ $component }}
  ports:
  - name: {{ index . 4 }}
    port: {{ index . 3 }}
    targetPort: {{ index . 3 }}
{{- end -}}
