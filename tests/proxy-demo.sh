#!/usr/bin/env bash
# Runs linkerd-proxy in front of a small web app on this machine, sends
# traffic through it and shows the proxy's metrics. No root, no cluster.
#   tests/proxy-demo.sh          keep running until Ctrl-C
#   tests/proxy-demo.sh --once   show the results and stop (used by the tests)
#   PROFILE=debug ...              use a debug build (default: release)
#   DEMO_NO_BUILD=1 ...            use the binary already built (the tests do)
set -euo pipefail
cd "$(dirname "$0")/.."
once=false
[ "${1:-}" = "--once" ] && once=true
profile=${PROFILE:-release}

for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "proxy-demo: $tool is required" >&2; exit 1; }
done

if [ -z "${DEMO_NO_BUILD:-}" ]; then
  echo "==> building linkerd-proxy ($profile)"
  if [ "$profile" = release ]; then cargo build -q --release -p linkerd-proxy; else cargo build -q -p linkerd-proxy; fi
fi
proxy=target/$profile/linkerd-proxy

# The "pod": an app on its own loopback address, and its proxy. Without
# iptables, the proxy is told where connections were headed. (The app is
# Python's http.server, which speaks HTTP/1 only; the proxy keeps each
# client's protocol, so HTTP/2 to it would fail as it would without a proxy.)
app=127.0.0.2:8080
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

echo "hello from the demo app" > "$tmp/index.html"
python3 -m http.server 8080 --bind 127.0.0.2 --directory "$tmp" >"$tmp/app.log" 2>&1 &
pids+=($!)

LINKERD2_PROXY_IDENTITY_DISABLED=true \
LINKERD2_PROXY_INBOUND_LISTEN_ADDR=127.0.0.1:4143 \
LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR=127.0.0.1:4140 \
LINKERD2_PROXY_ADMIN_LISTEN_ADDR=127.0.0.1:4191 \
LINKERD2_PROXY_INBOUND_ORIG_DST_ADDR=$app \
LINKERD2_PROXY_OUTBOUND_ORIG_DST_ADDR=$app \
LINKERD2_PROXY_LOG=${LINKERD2_PROXY_LOG:-warn,linkerd_proxy::app=info} \
  "$proxy" >"$tmp/proxy.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:4191/ready >/dev/null 2>&1 && curl -fs "http://$app/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs http://127.0.0.1:4191/ready >/dev/null || { echo "proxy-demo: the proxy did not start:" >&2; cat "$tmp/proxy.log" >&2; exit 1; }

echo "==> 10 requests through the inbound listener (127.0.0.1:4143 -> $app)"
for _ in $(seq 1 10); do curl -fs -H 'Host: web.demo:8080' http://127.0.0.1:4143/ >/dev/null; done
echo "==> 5 requests through the outbound listener (127.0.0.1:4140)"
for _ in $(seq 1 5); do curl -fs -o /dev/null -H 'Host: web.demo:8080' http://127.0.0.1:4140/; done
echo "==> 1 missing page"
curl -s -o /dev/null -H 'Host: web.demo:8080' http://127.0.0.1:4143/missing

echo "==> the proxy's metrics (http://127.0.0.1:4191/metrics):"
curl -fs http://127.0.0.1:4191/metrics | grep -E '^(request_total|response_total|tcp_open_total)' | sed 's/^/    /'

if $once; then exit 0; fi
cat <<TXT

The proxy is running:
  inbound   127.0.0.1:4143   curl -H 'Host: web.demo' http://127.0.0.1:4143/
  outbound  127.0.0.1:4140   curl -H 'Host: web.demo' http://127.0.0.1:4140/
  admin     127.0.0.1:4191   curl http://127.0.0.1:4191/metrics
Ctrl-C stops it and the demo app.
TXT
wait
