#!/usr/bin/env bash
# End-to-end tests on a real Kubernetes cluster: what a user does, with the
# project's own images, each step checking outcomes, not just exit codes.
#
#   bin/images --load containerd        # or --load kind:NAME, --push REGISTRY
#   KUBECONFIG=... tests/e2e.sh
#
# Needs: the cluster in $KUBECONFIG with the images loaded, target/debug/linkerd
# (cargo build --workspace --bins), kubectl (PATH or target/tools/bin) and
# curl. Without a reachable cluster it says so and exits 0 (skipped).
# E2E_CLUSTER_NETWORKS: the cluster's pod and service ranges (clusterNetworks);
# E2E_KEEP=1 leaves the mesh installed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/target/tools/bin:$PATH"
L="$PWD/target/debug/linkerd"
NETWORKS=${E2E_CLUSTER_NETWORKS:-198.18.0.0/15}
LOG=$PWD/target/e2e
mkdir -p "$LOG"

passed=0
failed=0
failures=()
step() { printf '==> %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf '  ok   %s\n' "$*"; }
bad() { failed=$((failed + 1)); failures+=("$*"); printf '  FAIL %s\n' "$*"; }
check() { # description, command...
  local what=$1; shift
  if "$@" >"$LOG/last.out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/       /' "$LOG/last.out" | tail -15; evidence; cluster_evidence; fi
}
# After a failed check: the meshed demo proxies' recent warnings and failed
# requests, on screen (a few) and in $LOG/proxies-<n>.log (all), so a
# failure that does not repeat still says why it happened.
evidence() {
  local out="$LOG/proxies-$failed.log" pod
  for pod in $(kubectl get pods -n emojivoto -o name 2>/dev/null); do
    echo "== $pod"
    kubectl logs -n emojivoto "$pod" -c linkerd-proxy --since=5m 2>/dev/null | grep -v ' DEBUG \| TRACE ' | tail -100
  done >"$out" 2>&1
  grep -e '^==' -e 'WARN\|ERROR\|request failed' "$out" | grep -v 'not authorized' | grep -B1 -v '^==' | tail -12 | sed 's/^/       | /'
}
# Once, at the first failure where the cluster itself is unwell: the node's
# pressure conditions, pods that are not ready, warning events and the
# identity controller's log, since a mesh that never certifies a proxy
# fails every later check for the same reason.
cluster_evidence_shown=
cluster_evidence() {
  [ -n "$cluster_evidence_shown" ] && return
  local notready
  notready=$(kubectl get pods -A --no-headers 2>/dev/null | awk '{split($3, r, "/"); if (r[1] != r[2] && $4 != "Completed") print}')
  [ -z "$notready" ] && return
  cluster_evidence_shown=1
  {
    echo "node conditions:"
    kubectl get nodes -o jsonpath='{range .items[*].status.conditions[*]}{.type}={.status} {.message}{"\n"}{end}'
    echo "pods not ready:"; echo "$notready"
    echo "warning events:"
    kubectl get events -A --field-selector type=Warning --sort-by=.lastTimestamp 2>/dev/null | tail -8
    echo "identity's log:"
    kubectl logs -n linkerd deploy/linkerd-identity -c identity --tail=8 2>&1
    echo "disk: $(df -h --output=avail,size . | tail -1)"
  } 2>&1 | tail -40 | sed 's/^/       ! /'
}
# Retries a command every 2s for up to $1 seconds.
eventually() {
  local secs=$1; shift
  local until=$((SECONDS + secs))
  while ! "$@"; do
    [ $SECONDS -ge $until ] && return 1
    sleep 2
  done
}
finish() {
  echo
  for f in "${failures[@]}"; do echo "FAILED: $f"; done
  echo "e2e: $passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit $?
}

if [ -z "${KUBECONFIG:-}" ] || ! kubectl version >/dev/null 2>&1; then
  echo "e2e: SKIPPED: no cluster (set KUBECONFIG to a running cluster with the images loaded; tests/run.sh starts one where it can)"
  exit 0
fi
[ -x "$L" ] || { echo "e2e: build the binaries first: cargo build --workspace --bins" >&2; exit 1; }
K() { kubectl "$@"; }

# ---------------------------------------------------------------- install
step "linkerd check --pre"
check "check --pre passes on a cluster without the mesh" "$L" check --pre

step "linkerd install --crds, then linkerd install | kubectl apply"
"$L" install --crds >"$LOG/crds.yaml"
check "the CRDs apply" K apply -f "$LOG/crds.yaml"
check "the CRDs are established" K wait --for=condition=Established crd --all --timeout=60s
# Prometheus is the project's image of Debian's; Grafana's image comes from
# a registry, which a registry-less cluster cannot pull from.
"$L" install --set clusterNetworks="$NETWORKS" --set grafana.enabled=false >"$LOG/install.yaml"
check "the manifests apply" K apply -f "$LOG/install.yaml"
cp_ready() { K wait --for=condition=Ready pods --all -n linkerd --timeout=10s >/dev/null 2>&1; }
check "every control-plane pod is Ready" eventually 180 cp_ready
cp_meshed() {
  local pods
  pods=$(K get pods -n linkerd -o jsonpath='{range .items[*]}{.metadata.name} {.spec.containers[*].name} {.status.containerStatuses[*].ready}{"\n"}{end}')
  echo "$pods"
  [ "$(echo "$pods" | grep -c .)" -ge 7 ] && ! echo "$pods" | grep -v linkerd-proxy | grep -q . && ! echo "$pods" | grep -q false
}
check "every control-plane pod runs its own proxy, all containers ready" cp_meshed
check_all_ok() { "$L" check --wait 2m >"$LOG/check.txt" 2>&1; local rc=$?; cat "$LOG/check.txt"; [ $rc = 0 ] && ! grep -q '×' "$LOG/check.txt" && grep -q 'Status check results are √' "$LOG/check.txt"; }
check "linkerd check is all √" check_all_ok

# ---------------------------------------------------------------- the demo
step "the demo, injected by the webhook"
"$L" demo --manifest >"$LOG/demo.yaml"
check "the demo applies" K apply -f "$LOG/demo.yaml"
demo_ready() { K rollout status -n emojivoto deploy/web deploy/emoji deploy/voting deploy/vote-bot --timeout=10s >/dev/null 2>&1; }
check "the demo's deployments roll out" eventually 180 demo_ready
injected() {
  local out
  out=$(K get pods -n emojivoto -o jsonpath='{range .items[*]}{.metadata.name} init={.spec.initContainers[*].name} exit={.status.initContainerStatuses[*].state.terminated.exitCode} containers={.spec.containers[*].name}{"\n"}{end}')
  echo "$out"
  [ "$(echo "$out" | grep -c 'init=linkerd-init exit=0 containers=.*linkerd-proxy')" = 4 ]
}
check "every demo pod has linkerd-init (exited 0) and linkerd-proxy" injected
# The injector reads namespaces and linkerd-config from its watches (its
# Role grants linkerd-config by name alone): a refused watch would show as
# a warning, and injection would still work, reading the API per pod.
injector_watches() {
  local out
  out=$(K logs -n linkerd deploy/linkerd-proxy-injector -c proxy-injector)
  echo "$out" | grep -c 'admission review'
  ! echo "$out" | grep -E 'watch failed|reading them from the API'
}
check "the injector answered from its watches (no refused watch, no per-pod reads)" injector_watches
iptables_ran() {
  local pod
  pod=$(K get pods -n emojivoto -l app=web -o jsonpath='{.items[0].metadata.name}')
  K logs -n emojivoto "$pod" -c linkerd-init | tee /dev/stderr | grep -q -- '-A PROXY_INIT_REDIRECT -p tcp .*-j REDIRECT --to-ports 4143'
}
check "linkerd-init wrote the redirect rules in the pod" iptables_ran
issued() {
  local pod n
  pod=$(K get pods -n linkerd -l linkerd.io/control-plane-component=identity -o jsonpath='{.items[0].metadata.name}')
  n=$(K get --raw "/api/v1/namespaces/linkerd/pods/$pod:9990/proxy/metrics" | awk '/^identity_cert_issued_total/ {print $2}')
  echo "identity_cert_issued_total=$n"
  [ "${n:-0}" -ge 10 ]
}
check "identity issued certificates through TokenReviews (control plane and demo)" issued

# ---------------------------------------------------------------- traffic
step "traffic over mTLS (waiting a minute for a full stat window)"
sleep 60
edges_ok() {
  "$L" edges deploy -n emojivoto -o json | tee "$LOG/edges.json" | python3 -c '
import json, sys
edges = json.load(sys.stdin)
def id(sa): return f"{sa}.emojivoto.serviceaccount.identity.linkerd.cluster.local"
for src, dst in [("vote-bot", "web"), ("web", "emoji"), ("web", "voting")]:
    e = [e for e in edges if e["src"] == src and e["dst"] == dst]
    assert e and e[0]["client_id"] == id(src) and e[0]["server_id"] == id(dst), (src, dst, edges)
# The public API scrapes the proxies admin ports directly: no edge of its own.
assert not [e for e in edges if e["src"] == "linkerd-public-api"], edges
'
}
check "edges: vote-bot->web, web->emoji, web->voting with both identities" eventually 60 edges_ok
server_tls() {
  "$L" diagnostics proxy-metrics -n emojivoto deploy/emoji | grep '^request_total{direction="inbound"' | tee /dev/stderr | grep -q 'tls="true",client_id="web.emojivoto'
}
check "emoji's proxy counts web's requests as tls=\"true\"" server_tls
# Prometheus' own view, through the API server's service proxy.
prom() { K get --raw "/api/v1/namespaces/linkerd/services/linkerd-prometheus:9090/proxy/api/v1/$1"; }
prom_targets() {
  prom targets | tee "$LOG/targets.json" | python3 -c '
import json, sys
active = json.load(sys.stdin)["data"]["activeTargets"]
proxies = [t for t in active if t["labels"]["job"] == "linkerd-proxy"]
pods = {(t["labels"]["namespace"], t["labels"].get("deployment")) for t in proxies}
print(len(proxies), "proxy targets:", sorted(pods))
assert all(t["health"] == "up" for t in proxies), [t for t in proxies if t["health"] != "up"]
for ns, deploy in [("emojivoto", "web"), ("emojivoto", "emoji"), ("emojivoto", "voting"),
                   ("emojivoto", "vote-bot"), ("linkerd", "linkerd-destination"),
                   ("linkerd", "linkerd-prometheus")]:
    assert (ns, deploy) in pods, (ns, deploy)
controllers = {t["labels"]["component"] for t in active if t["labels"]["job"] == "linkerd-controller"}
assert {"destination", "identity", "prometheus"} <= controllers, controllers
'
}
check "Prometheus scrapes every meshed pod's proxy, found by the targets sidecar, with Linkerd's labels" eventually 60 prom_targets
prom_series() {
  prom 'query?query=sum%20by%20(deployment)%20(request_total%7Bnamespace%3D%22emojivoto%22%2Cdirection%3D%22inbound%22%7D)' | tee /dev/stderr | grep -q '"deployment":"emoji"'
}
check "Prometheus holds the demo's request_total by deployment" prom_series
stat_ok() {
  "$L" stat deploy -n emojivoto -o json | tee "$LOG/stat.json" | python3 -c '
import json, sys
rows = {r["name"]: r for r in json.load(sys.stdin)}
web, emoji, voting = rows["web"], rows["emoji"], rows["voting"]
assert abs(web["success"] - 0.85) <= 0.05, web
assert abs(voting["success"] - 0.85) <= 0.05, voting
assert emoji["success"] == 1.0, emoji
assert 20 <= emoji["latency_ms_p50"] <= 30, emoji
assert 8 <= web["rps"] <= 12, web
assert rows["vote-bot"]["meshed"] == "1/1"
'
}
check "stat (from the in-cluster Prometheus): web and voting ~85% success, emoji 100% at ~25ms, ~10rps" eventually 60 stat_ok
tap_ok() {
  timeout 15 "$L" tap deploy/web -n emojivoto >"$LOG/tap.txt" 2>&1
  head -5 "$LOG/tap.txt"
  [ "$(grep -c '^req .*tls=true' "$LOG/tap.txt")" -ge 5 ]
}
apiservice_ok() { [ "$(K get apiservice v1alpha1.tap.linkerd.io -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')" = True ]; }
check "tap's aggregated API (APIService v1alpha1.tap.linkerd.io) is Available" eventually 90 apiservice_ok
check "tap: live requests through the API server" tap_ok
# A user the cluster knows nothing about: impersonated (--as), as kubectl does.
tap_refused() {
  timeout 15 "$L" --as e2e-tapper tap deploy/web -n emojivoto >"$LOG/tap-refused.txt" 2>&1
  local rc=$?
  cat "$LOG/tap-refused.txt"
  [ $rc != 0 ] && [ $rc != 124 ] && grep -q 'User "e2e-tapper" cannot watch resource "deployments/tap" in API group "tap.linkerd.io" in the namespace "emojivoto"' "$LOG/tap-refused.txt"
}
check "tap as a user without tap.linkerd.io RBAC: refused with the API server's message" tap_refused
check "the user is bound to linkerd-tap-reader" K create clusterrolebinding e2e-tapper --clusterrole linkerd-tap-reader --user e2e-tapper
tap_as_user() {
  timeout 15 "$L" --as e2e-tapper tap deploy/web -n emojivoto >"$LOG/tap-user.txt" 2>&1
  head -3 "$LOG/tap-user.txt"
  [ "$(grep -c '^req .*tls=true' "$LOG/tap-user.txt")" -ge 5 ]
}
check "with the binding, the same user's tap shows events" eventually 30 tap_as_user
K delete clusterrolebinding e2e-tapper >/dev/null
top_ok() {
  # top draws on a terminal: give it one.
  timeout 12 script -qec "stty rows 40 cols 160; $L top deploy/web -n emojivoto" /dev/null >"$LOG/top.txt" 2>&1
  # The screen is redrawn by differences: a row that takes the place of
  # another keeps the cells they share (the leading "/" of a path), so the
  # path is looked for without it.
  grep -q 'api/vote' "$LOG/top.txt"
}
check "top: the busiest path shows" top_ok
dashboard_ok() {
  local port=50751 pid rc=1
  "$L" dashboard --show url --port $port >"$LOG/dashboard.txt" 2>&1 &
  pid=$!
  for _ in $(seq 30); do
    if curl -sf "http://localhost:$port/api/stat?kind=deployment&namespace=emojivoto" >"$LOG/dashboard.json" 2>/dev/null; then
      grep -q '"name":"web"' "$LOG/dashboard.json" && curl -sf "http://localhost:$port/" | grep -q app.js \
        && { curl -sN --max-time 8 "http://localhost:$port/api/tap?resource=deploy/web&namespace=emojivoto" >"$LOG/dashboard-tap.txt" 2>/dev/null; true; } \
        && [ "$(grep -c '^data: {"' "$LOG/dashboard-tap.txt")" -ge 3 ] \
        && curl -sf --max-time 60 "http://localhost:$port/api/check" >"$LOG/dashboard-check.json" \
        && python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
bad = [c for cat in r["categories"] for c in cat["checks"] if c["result"] == "error"]
assert r["success"] and not bad, bad
' "$LOG/dashboard-check.json" && rc=0
      break
    fi
    sleep 1
  done
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  return $rc
}
check "dashboard: pages, API, live tap (through the API server, as the dashboard's ServiceAccount), and its linkerd check all passing with the dashboard's RBAC" dashboard_ok
dashboard_charts_ok() {
  local port=50752 pid rc=1
  "$L" dashboard --show url --port $port >"$LOG/dashboard-charts.txt" 2>&1 &
  pid=$!
  # Prometheus' range queries through the public API: web's line has points
  # (once Prometheus holds a minute of data), and each edge its traffic.
  for _ in $(seq 90); do
    if curl -sf "http://localhost:$port/api/stat_range?kind=deployment&namespace=emojivoto&range=300&step=15" >"$LOG/dashboard-range.json" 2>/dev/null \
      && curl -sf "http://localhost:$port/api/edges?kind=deployment&namespace=emojivoto" >"$LOG/dashboard-edges.json" 2>/dev/null \
      && python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
web = [s for s in r["series"] if s["name"] == "web"][0]
assert any(v and v > 0 for v in web["rps"]), web
e = json.load(open(sys.argv[2]))["edges"]
assert e and all(x["rps"] and x["rps"] > 0 for x in e if x["src"]["name"] == "vote-bot"), e
' "$LOG/dashboard-range.json" "$LOG/dashboard-edges.json" 2>/dev/null; then
      rc=0
      break
    fi
    sleep 1
  done
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  return $rc
}
check "dashboard: charts from Prometheus' range queries, edges with their traffic" dashboard_charts_ok
check "linkerd check --proxy passes" "$L" check --proxy -n emojivoto --wait 1m

step "service profiles: what linkerd profile writes passes the API server's validation"
profile_applies() { "$L" profile "$@" -n emojivoto >"$LOG/profile.yaml" && K apply --dry-run=server -f "$LOG/profile.yaml"; }
check "linkerd profile --proto (the demo's protobuf file)" profile_applies --proto cli/proto/emojivoto.proto emoji-svc
check "linkerd profile --open-api (an OpenAPI 3 description)" profile_applies --open-api tests/fixtures/books.openapi.yaml books
check "linkerd profile --template" profile_applies --template web-svc
cat >"$LOG/web-profile.yaml" <<'YAML'
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: web-svc.emojivoto.svc.cluster.local, namespace: emojivoto}
spec:
  routes:
  - name: GET /api/vote
    condition: {method: GET, pathRegex: /api/vote}
    isRetryable: true
    timeout: 5s
  - name: GET /api/list
    condition: {method: GET, pathRegex: /api/list}
YAML
check "web-svc's ServiceProfile (a retryable route) applies" K apply -f "$LOG/web-profile.yaml"
# Through Prometheus: web's proxy counts its route inbound; vote-bot's
# counts it outbound, each attempt beside what vote-bot saw.
routes_json() { "$L" routes "$@" -n emojivoto -o json >"$LOG/routes.json" && cat "$LOG/routes.json"; }
routes_inbound() {
  routes_json deploy/web | python3 -c '
import json, sys
rows = json.load(sys.stdin)
vote = [r for r in rows if r["route"] == "GET /api/vote"][0]
print(vote)
assert (vote["rps"] or 0) > 0, vote
assert any(r["route"] == "GET /api/list" for r in rows), rows
'
}
check "linkerd routes deploy/web: its profile's route, counted by web's proxy" eventually 150 routes_inbound
routes_outbound() {
  routes_json deploy/vote-bot --to svc/web-svc | python3 -c '
import json, sys
rows = json.load(sys.stdin)
vote = [r for r in rows if r["route"] == "GET /api/vote"][0]
print(vote)
assert (vote["actual_rps"] or 0) > 0, vote
assert (vote["effective_success"] or 0) >= (vote["actual_success"] or 0), vote
'
}
check "linkerd routes --to svc/web-svc: vote-bot's retried votes, effective at or above actual success" eventually 150 routes_outbound

# ---------------------------------------------------------------- failures
# Requests the client saw fail for the mesh's reasons: any response at the
# web pod's outbound side but a 200 (voting's designed failures are gRPC
# errors in 200 responses), and any vote-bot saw but 200 or 500 (web's
# answer to a designed failure).
# The series are kept in $LOG/broken-<step>.txt, so a failed check shows
# which statuses and endpoints the new failures were at.
broken() {
  { "$L" diagnostics proxy-metrics -n emojivoto deploy/web | grep '^response_total{direction="outbound"' | grep -v 'status_code="200"'
    "$L" diagnostics proxy-metrics -n emojivoto deploy/vote-bot | grep '^response_total{direction="outbound"' | grep -v 'status_code="200"' | grep -v 'status_code="500"'
  } | tee "$LOG/broken-$1.txt" | awk '{s += $2} END {print s + 0}'
}
# Passes if no failure was added between two `broken` snapshots; else shows
# the series that grew.
no_new_failures() {
  [ "$(awk '{s += $2} END {print s + 0}' "$LOG/broken-$1.txt")" = "$(awk '{s += $2} END {print s + 0}' "$LOG/broken-$2.txt")" ] && return 0
  diff "$LOG/broken-$1.txt" "$LOG/broken-$2.txt"
  return 1
}
# ---------------------------------------------------------------- policy
step "authorization policy: only vote-bot may call web"
cat >"$LOG/policy.yaml" <<'YAML'
apiVersion: policy.linkerd.io/v1beta3
kind: Server
metadata: {name: web-http, namespace: emojivoto}
spec:
  podSelector: {matchLabels: {app: web}}
  port: app
  proxyProtocol: HTTP/1
---
apiVersion: policy.linkerd.io/v1alpha1
kind: MeshTLSAuthentication
metadata: {name: vote-bot, namespace: emojivoto}
spec:
  identityRefs: [{kind: ServiceAccount, name: vote-bot}]
---
apiVersion: policy.linkerd.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-from-vote-bot, namespace: emojivoto}
spec:
  targetRef: {group: policy.linkerd.io, kind: Server, name: web-http}
  requiredAuthenticationRefs:
  - {group: policy.linkerd.io, kind: MeshTLSAuthentication, name: vote-bot}
YAML
check "Linkerd's Server, MeshTLSAuthentication and AuthorizationPolicy apply as written" K apply -f "$LOG/policy.yaml"
# Two more callers of web, copies of vote-bot: one meshed with another
# identity, one not meshed at all.
demo_image=$(grep -m1 -o 'image: .*demo.*' "$LOG/demo.yaml" | cut -d' ' -f2)
caller() { # name, inject
  cat <<YAML
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: $1, namespace: emojivoto}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, namespace: emojivoto, labels: {app: $1}}
spec:
  replicas: 1
  selector: {matchLabels: {app: $1}}
  template:
    metadata:
      labels: {app: $1}
      annotations: {linkerd.io/inject: $2}
    spec:
      serviceAccountName: $1
      containers:
      - name: $1
        image: $demo_image
        imagePullPolicy: IfNotPresent
        args: [demo-app, vote-bot, --listen, 0.0.0.0:8080, --rps, "2"]
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: {drop: [ALL]}}
YAML
}
{ caller intruder enabled; caller outsider disabled; } >"$LOG/intruders.yaml"
check "a meshed intruder and an unmeshed outsider start calling web" K apply -f "$LOG/intruders.yaml"
web_authz() { "$L" diagnostics proxy-metrics -n emojivoto deploy/web | grep "^inbound_http_authz_$1_total{" | grep -e "$2" | awk '{s += $2} END {print s + 0}'; }
positive() { local n; n=$("$@"); echo "$n"; [ "${n%.*}" -gt 0 ]; }
check "vote-bot is admitted by its policy (inbound_http_authz_allow_total)" eventually 90 positive web_authz allow 'authz_name="web-from-vote-bot".*client_id="vote-bot.emojivoto'
# On failure, the deny series web has, and how the intruder's proxy reached it.
intruder_denied() {
  positive web_authz deny 'srv_name="web-http".*client_id="intruder.emojivoto' && return
  "$L" diagnostics proxy-metrics -n emojivoto deploy/web | grep '^inbound_http_authz_deny_total{' | sed 's/^.*srv_name/srv_name/' | head -3
  "$L" diagnostics proxy-metrics -n emojivoto deploy/intruder | grep '^request_total{direction="outbound"' | sed 's/^.*target_addr/target_addr/' | head -3
  return 1
}
check "the meshed intruder is denied and counted with its identity" eventually 90 intruder_denied
check "the unmeshed outsider is denied" eventually 90 positive web_authz deny 'srv_name="web-http".*tls="no_identity"'
intruder_403() { "$L" diagnostics proxy-metrics -n emojivoto deploy/intruder | grep '^response_total{direction="outbound"' | grep 'status_code="403"' | grep -q .; }
check "the intruder's own proxy sees 403s" eventually 60 intruder_403
stat_denied() {
  "$L" stat deploy/web -n emojivoto -o json | python3 -c '
import json, sys
web = [r for r in json.load(sys.stdin) if r["name"] == "web"][0]
print(web)
assert (web["denied_rps"] or 0) > 0, web
'
}
check "linkerd stat -o json counts the requests web's policy denied" eventually 120 stat_denied
dashboard_denied() {
  local port=50752 pid rc=1
  "$L" dashboard --show url --port $port >"$LOG/dashboard-denied.txt" 2>&1 &
  pid=$!
  for _ in $(seq 30); do
    if curl -sf "http://localhost:$port/api/stat?kind=deployment&namespace=emojivoto&name=web" >"$LOG/dashboard-denied.json" 2>/dev/null; then
      python3 -c '
import json, sys
web = json.load(open(sys.argv[1]))["rows"][0]
print(web)
assert (web["denied_rps"] or 0) > 0, web
' "$LOG/dashboard-denied.json" && rc=0
      break
    fi
    sleep 1
  done
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  return $rc
}
check "the dashboard's API shows web's denied requests (its Denied card and column)" eventually 60 dashboard_denied
authz_rows() {
  "$L" authz deploy/web -n emojivoto -o json | python3 -c '
import json, sys
rows = json.load(sys.stdin)
print(rows)
assert any(r["authorization"] == "authorizationpolicy/web-from-vote-bot" and r["rps"] > 0 for r in rows), rows
assert any(r["server"] == "server:web-http" and r["unauthorized_rps"] > 0 for r in rows), rows
'
}
check "linkerd authz: vote-bot's authorization and the denied requests, per server and route" eventually 120 authz_rows
# The control plane's own policy: tap's and the public API's gRPC ports
# answer nothing to a pod that is not the dashboard (or the public API).
cp_refuses() { # pod, address, command...
  local pod=$1 addr=$2 out
  shift 2
  out=$(timeout 30 kubectl exec -n emojivoto "deploy/$pod" -c "$pod" -- linkerd --api-addr "$addr" "$@" 2>&1)
  local rc=$?
  echo "$pod: rc=$rc: $out" | head -3
  # Here-strings, not pipes: under pipefail, grep -q leaving at its first
  # match made a long output's echo die of SIGPIPE, failing a refusal.
  [ $rc != 0 ] && ! grep -q '^req ' <<<"$out" && grep -qi 'permission\|denied\|unauthorized\|forbidden' <<<"$out"
}
for pod in intruder outsider; do
  check "$pod: tap's gRPC port refuses it, no events" cp_refuses $pod linkerd-tap.linkerd.svc.cluster.local:8088 tap deploy/web -n emojivoto
  check "$pod: the public API's port refuses it" cp_refuses $pod linkerd-public-api.linkerd.svc.cluster.local:8085 stat deploy -n emojivoto
done
before=$(broken policy-before)
sleep 10
after=$(broken policy-after)
check "vote-bot loses no request to the policy" no_new_failures policy-before policy-after
K delete -f "$LOG/intruders.yaml" --wait=false >/dev/null 2>&1
check "the policy resources delete" K delete -f "$LOG/policy.yaml"

step "a destination pod deleted under traffic"
before=$(broken destination-before)
K delete pod -n linkerd -l linkerd.io/control-plane-component=destination --wait=false >/dev/null
sleep 20
check "destination is back" eventually 120 cp_ready
after=$(broken destination-after)
echo "  failed requests: $before before, $after after"
check "no request failed while destination was replaced" no_new_failures destination-before destination-after

step "a demo pod deleted: endpoints follow"
old=$(K get pods -n emojivoto -l app=emoji -o jsonpath='{.items[0].metadata.name}')
K delete pod -n emojivoto "$old" >/dev/null
check "emoji rolls back" eventually 120 demo_ready
to_old() { "$L" diagnostics proxy-metrics -n emojivoto deploy/web | grep '^request_total{direction="outbound"' | grep "dst_pod=\"$old\"" | awk '{s += $2} END {print s + 0}'; }
sleep 5
n1=$(to_old); sleep 10; n2=$(to_old)
echo "  requests to the deleted pod $old: $n1, 10s later $n2"
check "no request goes to the deleted pod after the update" test "$n1" = "$n2"
new_gets() { "$L" diagnostics proxy-metrics -n emojivoto deploy/web | grep '^request_total{direction="outbound"' | grep 'dst_deployment="emoji"' | grep -v "dst_pod=\"$old\"" | grep -q .; }
check "the new emoji pod gets the requests" eventually 30 new_gets

step "a rolling restart of voting under load"
before=$(broken restart-before)
K rollout restart -n emojivoto deploy/voting >/dev/null
check "voting restarts" K rollout status -n emojivoto deploy/voting --timeout=180s
sleep 10
after=$(broken restart-after)
echo "  failed requests: $before before, $after after"
check "zero failed requests during the rolling restart" no_new_failures restart-before restart-after

# ---------------------------------------------------------------- drills
# The destination service's failure drills (tests/tests/drills.rs) against
# this cluster's API server: a controller on this host reaches it through a
# relay the drill cuts for 30 s under churn, and one is replaced while 2,000
# streams reconnect. Each stream's endpoints must end equal to a fresh Get.
step "failure drills against the real API server"
drills() {
  # --workspace: the features tests/run.sh built with, so nothing rebuilds.
  cargo test -q --locked --workspace --test drills -- --ignored --nocapture
}
check "an API outage under churn and a controller restart with 2,000 streams" drills
grep -e 'caught up' -e 'reconnected' "$LOG/last.out" | sed 's/^/  /'
K delete namespace l5d-drill-outage l5d-drill-restart --wait=false >/dev/null 2>&1

# ---------------------------------------------------------------- uninstall
if [ "${E2E_KEEP:-0}" != 1 ]; then
  step "uninstall"
  K delete -f "$LOG/demo.yaml" --wait=true --timeout=120s >/dev/null 2>&1
  "$L" uninstall >"$LOG/uninstall.yaml"
  check "linkerd uninstall | kubectl delete" K delete -f "$LOG/uninstall.yaml" --wait=true --timeout=180s
  leftovers() {
    local left
    left=$( { K get namespace linkerd emojivoto -o name 2>/dev/null
      K get clusterroles,clusterrolebindings,mutatingwebhookconfigurations -o name | grep -i linkerd; } )
    echo "$left"
    [ -z "$left" ]
  }
  check "no Linkerd object is left" eventually 120 leftovers
fi
finish
