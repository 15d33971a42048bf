#!/usr/bin/env bash
# What service profiles cost per outbound request, as instructions (see
# instructions.sh): each proxy binary sends to a service by name, resolved
# by a running `linkerd-controller destination` (one unmeshed endpoint:
# the backend), first with no ServiceProfile for the service, then with
# profiles.yaml's: four routes, the requests' route found last, retryable
# (the body is empty, so it is kept for a retry) and with a timeout.
#   tests/perf/profiles.sh BINARY [BINARY...]
# Needs target/debug/linkerd-controller (cargo build --workspace --bins).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ctl="$here/../../target/debug/linkerd-controller"
work=$(mktemp -d)
CPID=
trap 'kill $CPID 2>/dev/null; rm -rf "$work"' EXIT
destination() { # topology file
  [ -n "$CPID" ] && { kill $CPID; wait $CPID 2>/dev/null || true; }
  "$ctl" destination --local "$1" --addr 127.0.0.1:18086 --admin-addr 127.0.0.1:18096 >"$work/ctl.log" 2>&1 &
  CPID=$!
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:18096/ready && return; sleep 0.2; done
  echo "destination did not start:"; cat "$work/ctl.log"; exit 1
}
# The service, without and with its profile (the profile is the topology's
# last section).
sed '/^serviceProfiles:/,$d' "$here/profiles.yaml" >"$work/plain.yaml"
export URL_BASE=http://127.0.0.1:18140 HOST=bench.bench.svc.cluster.local:80
export EXTRA_ENV='LINKERD2_PROXY_DESTINATION_SVC_ADDR=127.0.0.1:18086 LINKERD2_PROXY_OUTBOUND_ORIG_DST_ADDR=127.0.0.1:18080'
destination "$work/plain.yaml"
echo "== outbound to a service without a profile"
"$here/instructions.sh" "$@"
destination "$here/profiles.yaml"
echo "== outbound with profiles.yaml (4 routes, the last matching; retryable; a timeout)"
"$here/instructions.sh" "$@"
