#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS seconds each (default 60) and
# fails on the first crash. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Installs cargo-fuzz if missing; needs the nightly toolchain. New inputs go
# to fuzz/corpus/<target>/ (ignored by git), starting from fuzz/seeds/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

# Keep the instrumented build between runs (CI caches ~/.cache).
cache="${GEMMA_FUZZ_TARGET:-$HOME/.cache/gemma-rs/fuzz-target}"
mkdir -p "$cache"
if [ ! -e target ]; then ln -s "$cache" target; fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  seeds=()
  if [ -d "seeds/$t" ]; then seeds=("seeds/$t"); fi
  echo "--- fuzz $t for ${secs}s"
  log="$(mktemp)"
  rc=0
  cargo +nightly fuzz run "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)|cov: .*DONE' "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "fuzz target $t failed (exit $rc); the input is in fuzz/artifacts/$t/" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
done
