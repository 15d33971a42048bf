{{/*
The proxy and its init container: what `linkerd inject`, the proxy injector and
the control plane's own pods all get. Rendered with the values of the pod being
injected (the installed values, then namespace and pod annotations). A control
plane pod passes `local` ("identity" or "destination") to have its proxy reach
that service in its own pod.
*/}}

{{/* The linkerd-proxy container, as a list item. */}}
{{- define "linkerd.proxy" -}}
- name: linkerd-proxy
  image: {{ include "linkerd.image" (list . "proxy" .Values.proxy.image) }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  env:
  - name: _pod_name
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: _pod_ns
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  - name: _pod_sa
    valueFrom:
      fieldRef:
        fieldPath: spec.serviceAccountName
  - name: _l5d_ns
    value: {{ .Release.Namespace }}
  - name: _l5d_trustdomain
    value: {{ .Values.identityTrustDomain }}
  - name: LINKERD2_PROXY_LOG
    value: {{ .Values.proxy.logLevel | quote }}
  - name: LINKERD2_PROXY_DESTINATION_SVC_ADDR
    {{- if eq (.local | default "") "destination" }}
    value: localhost.:8086
    {{- else }}
    value: linkerd-dst-headless.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}.:8086
    {{- end }}
  - name: LINKERD2_PROXY_DESTINATION_SVC_NAME
    value: linkerd-destination.$(_l5d_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)
  - name: LINKERD2_PROXY_DESTINATION_GET_NETWORKS
    value: {{ .Values.clusterNetworks | quote }}
  - name: LINKERD2_PROXY_INBOUND_LISTEN_ADDR
    value: 0.0.0.0:{{ .Values.proxy.ports.inbound }}
  - name: LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR
    value: 127.0.0.1:{{ .Values.proxy.ports.outbound }}
  - name: LINKERD2_PROXY_CONTROL_LISTEN_ADDR
    value: 0.0.0.0:{{ .Values.proxy.ports.control }}
  - name: LINKERD2_PROXY_ADMIN_LISTEN_ADDR
    value: 0.0.0.0:{{ .Values.proxy.ports.admin }}
  - name: LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION
    value: {{ .Values.proxy.opaquePorts | quote }}
  - name: LINKERD2_PROXY_INBOUND_DEFAULT_POLICY
    value: {{ .Values.proxy.defaultInboundPolicy }}
  - name: LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS
    value: {{ .Values.clusterNetworks | quote }}
  - name: LINKERD2_PROXY_POLICY_SVC_ADDR
    {{- if eq (.local | default "") "destination" }}
    value: localhost.:8090
    {{- else }}
    value: linkerd-policy.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}.:8090
    {{- end }}
  - name: LINKERD2_PROXY_POLICY_SVC_NAME
    value: linkerd-destination.$(_l5d_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)
  - name: LINKERD2_PROXY_POLICY_WORKLOAD
    value: '{"ns":"$(_pod_ns)","pod":"$(_pod_name)"}'
  {{- with .Values.proxy.shutdownGracePeriod }}
  - name: LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD
    value: {{ . | quote }}
  {{- end }}
  - name: LINKERD2_PROXY_IDENTITY_DIR
    value: /var/run/linkerd/identity/end-entity
  - name: LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS
    value: |
      {{- required "the trust anchors are missing: set identityTrustAnchorsPEM" .Values.identityTrustAnchorsPEM | trim | nindent 6 }}
  - name: LINKERD2_PROXY_IDENTITY_TOKEN_FILE
    value: /var/run/secrets/tokens/linkerd-identity-token
  - name: LINKERD2_PROXY_IDENTITY_SVC_ADDR
    {{- if eq (.local | default "") "identity" }}
    value: localhost.:8080
    {{- else }}
    value: linkerd-identity-headless.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}.:8080
    {{- end }}
  - name: LINKERD2_PROXY_IDENTITY_LOCAL_NAME
    value: $(_pod_sa).$(_pod_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)
  - name: LINKERD2_PROXY_IDENTITY_SVC_NAME
    value: linkerd-identity.$(_l5d_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)
  - name: LINKERD2_PROXY_TAP_SVC_NAME
    value: linkerd-tap.$(_l5d_ns).serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)
  ports:
  - containerPort: {{ .Values.proxy.ports.inbound }}
    name: linkerd-proxy
  - containerPort: {{ .Values.proxy.ports.admin }}
    name: linkerd-admin
  livenessProbe:
    httpGet:
      path: /live
      port: {{ .Values.proxy.ports.admin }}
    initialDelaySeconds: 10
  readinessProbe:
    httpGet:
      path: /ready
      port: {{ .Values.proxy.ports.admin }}
    initialDelaySeconds: 2
  {{- if .Values.proxy.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  {{- include "linkerd.resources" .Values.proxy.resources | nindent 2 }}
  securityContext:
    allowPrivilegeEscalation: false
    capabilities:
      drop:
      - ALL
    readOnlyRootFilesystem: true
    runAsNonRoot: true
    runAsUser: {{ .Values.proxy.uid }}
    runAsGroup: {{ .Values.proxy.gid }}
    seccompProfile:
      type: RuntimeDefault
  terminationMessagePolicy: FallbackToLogsOnError
  volumeMounts:
  - mountPath: /var/run/linkerd/identity/end-entity
    name: linkerd-identity-end-entity
  - mountPath: /var/run/secrets/tokens
    name: linkerd-identity-token
{{- end -}}

{{/* The linkerd-init container, as a list item: installs the iptables rules. */}}
{{- define "linkerd.proxy-init" -}}
{{ include "linkerd.proxy-init-skipping" (list . "") }}
{{- end -}}

{{/*
The same, with more outbound ports left alone: (list $ "4191"). The
control-plane pods that call proxies' own ports (the public API scraping
4191) reach them directly, not through their proxy.
*/}}
{{- define "linkerd.proxy-init-skipping" -}}
{{- $root := index . 0 -}}
{{- $skip := index . 1 -}}
{{- $configured := $root.Values.proxyInit.ignoreOutboundPorts -}}
{{- $out := ternary (printf "%s,%s" $configured $skip) (default $skip $configured) (and (not (empty $configured)) (not (empty $skip))) -}}
- name: linkerd-init
  image: {{ include "linkerd.image" (list $root "proxy-init" $root.Values.proxyInit.image) }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  args:
  - --incoming-proxy-port
  - {{ $root.Values.proxy.ports.inbound | quote }}
  - --outgoing-proxy-port
  - {{ $root.Values.proxy.ports.outbound | quote }}
  - --proxy-uid
  - {{ $root.Values.proxy.uid | quote }}
  - --inbound-ports-to-ignore
  - "{{ $root.Values.proxy.ports.control }},{{ $root.Values.proxy.ports.admin }}{{ with $root.Values.proxyInit.ignoreInboundPorts }},{{ . }}{{ end }}"
  {{- with $out }}
  - --outbound-ports-to-ignore
  - {{ . | quote }}
  {{- end }}
  {{- with $root.Values.proxyInit.skipSubnets }}
  - --subnets-to-ignore
  - {{ . | quote }}
  {{- end }}
  {{- include "linkerd.resources" $root.Values.proxyInit.resources | nindent 2 }}
  securityContext:
    allowPrivilegeEscalation: false
    capabilities:
      add:
      - NET_ADMIN
      - NET_RAW
      drop:
      - ALL
    privileged: false
    readOnlyRootFilesystem: true
    {{- if $root.Values.proxyInit.runAsRoot }}
    runAsNonRoot: false
    runAsUser: 0
    runAsGroup: 0
    {{- else }}
    runAsNonRoot: true
    runAsUser: 65534
    runAsGroup: 65534
    {{- end }}
    seccompProfile:
      type: RuntimeDefault
  terminationMessagePolicy: FallbackToLogsOnError
  volumeMounts:
  - mountPath: /run
    name: linkerd-proxy-init-xtables-lock
{{- end -}}

{{/* The volumes the two containers use, as list items. */}}
{{- define "linkerd.proxy-volumes" -}}
- name: linkerd-proxy-init-xtables-lock
  emptyDir: {}
- name: linkerd-identity-end-entity
  emptyDir:
    medium: Memory
- name: linkerd-identity-token
  projected:
    sources:
    - serviceAccountToken:
        audience: identity.l5d.io
        expirationSeconds: 86400
        path: linkerd-identity-token
{{- end -}}

{{/*
The annotations an injected pod carries (besides linkerd.io/created-by, which
names who injected it).
*/}}
{{- define "linkerd.proxy-annotations" -}}
linkerd.io/proxy-version: {{ .Values.proxy.image.version | default .Values.image.tag | default .Chart.AppVersion }}
linkerd.io/trust-root-sha256: {{ .Values.identityTrustAnchorsPEM | trim | sha256sum }}
{{- end -}}

{{/* The labels an injected pod carries. */}}
{{- define "linkerd.proxy-labels" -}}
linkerd.io/control-plane-ns: {{ .Release.Namespace }}
{{- end -}}
