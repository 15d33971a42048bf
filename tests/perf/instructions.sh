#!/usr/bin/env bash
# CPU per request as instructions, which this shared, noisy machine cannot
# blur: runs a proxy binary under callgrind, sends N1 and then N2 inbound
# HTTP/1 requests (one keep-alive connection, curl) to a small backend, and
# prints (instructions with N2 - with N1) / (N2 - N1): the start-up cancels.
#   tests/perf/instructions.sh BINARY [BINARY...]   (compare builds side by side)
# Needs valgrind, curl and python3. Takes about two minutes per binary.
# EXTRA_ENV="K=V ..." adds proxy settings (a policy service, say) to each run;
# URL_BASE and HOST send elsewhere (default: the inbound listener, Host
# bench.test).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N1=${N1:-200}; N2=${N2:-2200}; PORT=${PORT:-18080}
work=$(mktemp -d)
python3 "$here/backend.py" $PORT & BPID=$!
trap 'kill $BPID 2>/dev/null; rm -rf "$work"' EXIT
sleep 0.5
run() {
  local n=$1
  local out=$work/cg.$n
  env -i LINKERD2_PROXY_IDENTITY_DISABLED=true LINKERD2_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:18143 \
    LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:18140 LINKERD2_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:18191 \
    LINKERD2_PROXY_CONTROL_LISTEN_ADDR=127.0.0.1:18190 LINKERD2_PROXY_CORES=1 LINKERD2_PROXY_LOG=warn \
    LINKERD2_PROXY_INBOUND_ORIG_DST_ADDR=127.0.0.1:$PORT LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD=1s \
    ${EXTRA_ENV:-} \
    valgrind --tool=callgrind --callgrind-out-file=$out "$BIN" 2>$work/vg.$n.log &
  local P=$!
  for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18191/ready && break; sleep 0.2; done
  curl -s -o /dev/null -H "Host: ${HOST:-bench.test}" "${URL_BASE:-http://127.0.0.1:18143}/[1-$n]"
  kill -TERM $P; wait $P || true
  grep -o "Collected : [0-9]*" $work/vg.$n.log | awk '{print $3}'
}
for BIN in "$@"; do
  A=$(run $N1); B=$(run $N2)
  echo "$BIN: $(( (B - A) / (N2 - N1) )) instructions/request (N1=$N1: $A, N2=$N2: $B)"
done
