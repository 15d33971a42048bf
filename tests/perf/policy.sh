#!/usr/bin/env bash
# What inbound authorization costs per request, as instructions (see
# instructions.sh): each proxy binary under the default policy alone (no
# policy service), then enforcing policy.yaml from a policy service: a
# Server with four HTTPRoutes, the request's route found last and admitted
# by its second authorization.
#   tests/perf/policy.sh BINARY [BINARY...]
# Needs target/debug/linkerd-controller (cargo build --workspace --bins).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ctl="$here/../../target/debug/linkerd-controller"
"$ctl" policy --local "$here/policy.yaml" --addr 127.0.0.1:18090 --admin-addr 127.0.0.1:18093 >/dev/null 2>&1 &
CPID=$!
trap 'kill $CPID 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:18093/ready && break; sleep 0.2; done
echo "== default policy (all-unauthenticated), no policy service"
"$here/instructions.sh" "$@"
echo "== enforcing policy.yaml from the policy service"
EXTRA_ENV='LINKERD2_PROXY_POLICY_SVC_ADDR=127.0.0.1:18090 LINKERD2_PROXY_POLICY_WORKLOAD={"ns":"bench","pod":"bench-0"} LINKERD2_PROXY_INBOUND_PORTS=18080' \
  "$here/instructions.sh" "$@"
