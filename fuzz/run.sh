#!/usr/bin/env bash
# Runs the fuzz targets, each for MINUTES, and records what each did.
#
#   fuzz/run.sh [MINUTES] [TARGET...]     # default: 20 minutes, every target
#   JOBS=2 fuzz/run.sh 20                 # two targets at a time
#
# A benchmark-style run, not part of CI (CI replays the corpora through the
# same entry points in `cargo test`). Needs cargo-fuzz (installed into
# target/tools when missing) and a nightly toolchain, or the stable one with
# RUSTC_BOOTSTRAP=1. New corpus entries are merged (minimised) back into
# fuzz/corpus/<target>; a crash is kept in fuzz/artifacts/<target>/ and the
# run says so. Each run appends one line per target to fuzz/results.tsv:
# date, target, seconds it ran (a crash ends it early), executions, corpus
# files after the merge, crashes.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-20}
shift || true
root=$PWD
tools=$root/target/tools
export PATH="$tools/bin:$PATH"
export CARGO_TARGET_DIR=$root/target/fuzz

if ! command -v cargo-fuzz >/dev/null; then
  echo "==> installing cargo-fuzz (crates.io) into target/tools"
  cargo install --quiet --locked --root "$tools" cargo-fuzz@0.13.2
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
# The same dependency versions as the shipped binaries.
[ -f fuzz/Cargo.lock ] || cp Cargo.lock fuzz/Cargo.lock
[ -d fuzz/corpus ] || python3 fuzz/seeds.py

targets=("$@")
if [ ${#targets[@]} = 0 ]; then
  mapfile -t targets < <(cd fuzz/fuzz_targets && ls ./*.rs | sed 's|^\./||; s|\.rs$||')
fi
echo "==> building ${#targets[@]} targets"
"${fuzz[@]}" build --fuzz-dir fuzz >/dev/null
bin=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release

run_one() {
  local t=$1 secs=$((minutes * 60)) log scratch started=$SECONDS
  log=$CARGO_TARGET_DIR/logs/$t.log
  scratch=$CARGO_TARGET_DIR/corpus/$t
  mkdir -p "$(dirname "$log")" "$scratch" "fuzz/artifacts/$t"
  # New inputs go to a scratch corpus, merged into the kept one at the end,
  # so the repository keeps a minimal set rather than every step.
  # The binary the build above made, run directly: `cargo fuzz run` would
  # build again first (for minutes, counted as fuzzing) whenever a source
  # changed since.
  "$bin/$t" "$scratch" "fuzz/corpus/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || true
  # A crash ends the run early: record the time it ran, not the time asked.
  local ran=$((SECONDS - started))
  # libFuzzer's merge into an empty directory keeps the smallest set of
  # inputs with all the coverage of the kept corpus and the new one.
  local merged=$CARGO_TARGET_DIR/merged/$t
  rm -rf "$merged" && mkdir -p "$merged"
  if "$bin/$t" -merge=1 -timeout=10 -rss_limit_mb=2048 \
    "$merged" "fuzz/corpus/$t" "$scratch" >>"$log" 2>&1 && [ -n "$(ls -A "$merged")" ]; then
    rm -rf "fuzz/corpus/$t" && mv "$merged" "fuzz/corpus/$t"
  fi
  rm -rf "$scratch" "$merged"
  local execs corpus crashes
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo 0)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%F)" "$t" "$ran" "$execs" "$corpus" "$crashes" >>fuzz/results.tsv
  printf '  %-18s %8s executions in %ss, corpus %s, crashes %s\n' "$t" "$execs" "$ran" "$corpus" "$crashes"
  if [ "$crashes" != 0 ]; then
    grep -m1 -A3 'panicked at\|ERROR: AddressSanitizer\|ERROR: libFuzzer' "$log" | sed 's/^/     | /'
  fi
}

jobs=${JOBS:-1}
echo "==> ${#targets[@]} targets, ${minutes} min each, $jobs at a time (logs in target/fuzz/logs)"
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  run_one "$t" &
done
wait
