#!/usr/bin/env bash
# Benchmarks the release proxy: direct vs proxied latency and throughput for
# HTTP/1 and HTTP/2, and the proxy's memory and CPU. Prints a table.
#   BENCH_SECONDS (default 8) per run, BENCH_RATE (default 2000) for the fixed-rate runs,
#   BENCH_PROTO (http1 or h2; default both), BENCH_PROXY_CORES (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p linkerd-proxy -p linkerd-controller
cargo bench --locked -p linkerd-tests --bench proxy
