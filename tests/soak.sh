#!/usr/bin/env bash
# The soak (tests/benches/soak.rs): a meshed client calls a meshed service
# at 100 requests a second for 30 minutes, with endpoint churn every 20s,
# certificates renewed about every minute and the destination service
# restarted every 5 minutes. Prints each process's memory and file
# descriptors over time, the failed requests and the /metrics series.
#   SOAK_MINUTES, SOAK_RATE, SOAK_CHURN_SECONDS, SOAK_RESTART_SECONDS
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p linkerd-proxy -p linkerd-controller
cargo bench --locked -p linkerd-tests --bench soak
