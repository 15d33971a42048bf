#!/usr/bin/env bash
# The destination service at cluster scale (tests/benches/discovery.rs):
# 10,000 pods in 2,000 services across 50 namespaces on the fake API, 2,000
# open Get streams, pods replaced at 100 a second for a minute. Prints the
# API-event-to-update latency, updates to unaffected streams, and the
# controller's CPU and memory. Then the proxy injector (tests/benches/injector.rs)
# at 20 admissions a second for a minute: answer latency, API requests
# made, CPU and memory.
#   BENCH_NAMESPACES, BENCH_SERVICES, BENCH_PODS, BENCH_RATE, BENCH_SECONDS,
#   BENCH_ADMISSION_RATE
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p linkerd-controller -p linkerd-cli
cargo bench --locked -p linkerd-tests --bench discovery
cargo bench --locked -p linkerd-tests --bench injector
