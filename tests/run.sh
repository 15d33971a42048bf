#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs the
# format check, clippy and every test. Safe to run on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# Debian's Prometheus (and promtool), for the scrape configuration's tests.
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "==> not root: cannot install ${need_apt[*]}; install them, or the tests that need them fail or say they skipped"
  fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo build (binaries the end-to-end tests run)"
cargo build --workspace --bins --locked

echo "==> cargo test"
cargo test --workspace --locked
