#!/usr/bin/env bash
# Side-by-side speed of gemma-rs and llama.cpp on the same model, threads and
# token counts, alternating runs, printed as a markdown table with ratios.
#
#   scripts/bench-vs-llama.sh [MODEL.gguf] [RUNS]
#
# llama.cpp's llama-bench is built once, from the source package of
# llama-cpp-python (its sdist vendors llama.cpp), with GGML_NATIVE=ON and
# AMX off, into ~/.cache/gemma-rs/llama.cpp-<version>/. Not part of CI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$HOME/.cache/gemma-rs"
model="${1:-$cache/gemma-3-270m-q4_k_m.gguf}"
runs="${2:-3}"
mkdir -p "$cache"

# --- llama-bench, built once -------------------------------------------------
llama_bench() {
  local found
  found="$(ls -d "$cache"/llama.cpp-*/build/bin/llama-bench 2>/dev/null | head -n1 || true)"
  if [ -n "$found" ]; then
    echo "$found"
    return
  fi
  local dl="$cache/llama-cpp-python-sdist"
  mkdir -p "$dl"
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python --dest "$dl" llama-cpp-python >&2
  local tarball
  tarball="$(ls "$dl"/llama_cpp_python-*.tar.gz | sort -V | tail -n1)"
  local version
  version="$(basename "$tarball" .tar.gz | sed 's/^llama_cpp_python-//')"
  local src="$cache/llama.cpp-$version"
  rm -rf "$src.tmp"
  mkdir -p "$src.tmp"
  tar -xzf "$tarball" -C "$src.tmp" --strip-components=1
  if ! command -v cmake >/dev/null; then
    python3 -m pip install --quiet cmake >&2
  fi
  # The sdist keeps llama.cpp under vendor/llama.cpp.
  cmake -S "$src.tmp/vendor/llama.cpp" -B "$src.tmp/build" \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_AMX=OFF \
    -DGGML_CPU_AMX=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$src.tmp/build" --target llama-bench -j "$(nproc)" >&2
  mv "$src.tmp" "$src"
  echo "$src/build/bin/llama-bench"
}

bench_llama="$(llama_bench)"
(cd "$root" && cargo build --release -q -p gemma-cli)
gemma="$root/target/release/gemma"

# Peak RSS of a command, in bytes, from GNU time when present.
peak_rss() {
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -n1 | awk '{print $1 * 1024}'
  else
    echo 0
  fi
}

# llama-bench prints JSON lines with avg_ts per test (pp = prefill, tg = decode).
llama_run() { # threads
  "$bench_llama" -m "$model" -t "$1" -p 64,512 -n 64 -r 1 -o jsonl 2>/dev/null
}
gemma_run() { # threads
  "$gemma" bench --model "$model" --threads "$1" --json
}

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "# gemma-rs vs llama.cpp ($(dirname "$(dirname "$(dirname "$bench_llama")")" | xargs basename))"
echo
echo "CPU: $cpu, $(nproc) cores; model: $(basename "$model"); $runs alternating runs, best of each"
echo

for threads in 1 2; do
  declare -A best=()
  for ((r = 0; r < runs; r++)); do
    while read -r line; do
      n_p="$(echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["n_prompt"], d["n_gen"], d["avg_ts"])')"
      read -r np ng ts <<<"$n_p"
      key="llama_pp$np"
      [ "$ng" != 0 ] && key="llama_tg$ng"
      prev="${best[$key]:-0}"
      best[$key]="$(python3 -c "print(max($prev, $ts))")"
    done < <(llama_run "$threads")
    json="$(gemma_run "$threads")"
    for k in prefill_64_tok_s prefill_tok_s decode_tok_s; do
      v="$(echo "$json" | python3 -c "import json,sys; print(json.load(sys.stdin)['$k'])")"
      prev="${best[gemma_$k]:-0}"
      best[gemma_$k]="$(python3 -c "print(max($prev, $v))")"
    done
    best[gemma_rss]="$(echo "$json" | python3 -c "import json,sys; print(json.load(sys.stdin)['peak_rss_bytes'])")"
  done
  best[llama_rss]="$(peak_rss "$bench_llama" -m "$model" -t "$threads" -p 512 -n 64 -r 1)"
  echo "## $threads thread(s)"
  echo
  echo "| test | llama.cpp | gemma-rs | ratio |"
  echo "|---|---|---|---|"
  row() { printf '| %s | %.1f | %.1f | %.2f |\n' "$1" "$2" "$3" "$(python3 -c "print($3 / $2 if $2 else 0)")"; }
  row "prefill 64 (tok/s)" "${best[llama_pp64]}" "${best[gemma_prefill_64_tok_s]}"
  row "prefill 512 (tok/s)" "${best[llama_pp512]}" "${best[gemma_prefill_tok_s]}"
  row "decode 64 (tok/s)" "${best[llama_tg64]}" "${best[gemma_decode_tok_s]}"
  printf '| peak RSS (MB) | %.0f | %.0f | %.2f |\n' \
    "$(python3 -c "print(${best[llama_rss]} / 1e6)")" "$(python3 -c "print(${best[gemma_rss]} / 1e6)")" \
    "$(python3 -c "print(${best[gemma_rss]} / ${best[llama_rss]} if ${best[llama_rss]} else 0)")"
  echo
  unset best
done
