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

# shellcheck source=scripts/llama-cache.sh
source "$root/scripts/llama-cache.sh"
bench_llama="$(llama_dir)/build/bin/llama-bench"
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
gemma_run() { # threads precision
  "$gemma" bench --model "$model" --threads "$1" --precision "$2" --json
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
    for precision in exact fast; do
      json="$(gemma_run "$threads" "$precision")"
      for k in prefill_64_tok_s prefill_tok_s decode_tok_s; do
        v="$(echo "$json" | python3 -c "import json,sys; print(json.load(sys.stdin)['$k'])")"
        prev="${best[${precision}_$k]:-0}"
        best[${precision}_$k]="$(python3 -c "print(max($prev, $v))")"
      done
      best[${precision}_rss]="$(echo "$json" | python3 -c "import json,sys; print(json.load(sys.stdin)['peak_rss_bytes'])")"
    done
  done
  best[llama_rss]="$(peak_rss "$bench_llama" -m "$model" -t "$threads" -p 512 -n 64 -r 1)"
  echo "## $threads thread(s)"
  echo
  echo "| test | llama.cpp | gemma-rs exact | ratio | gemma-rs fast | ratio |"
  echo "|---|---|---|---|---|---|"
  ratio() { python3 -c "print($1 / $2 if $2 else 0)"; }
  row() {
    printf '| %s | %.1f | %.1f | %.2f | %.1f | %.2f |\n' "$1" "$2" "$3" "$(ratio "$3" "$2")" "$4" "$(ratio "$4" "$2")"
  }
  row "prefill 64 (tok/s)" "${best[llama_pp64]}" "${best[exact_prefill_64_tok_s]}" "${best[fast_prefill_64_tok_s]}"
  row "prefill 512 (tok/s)" "${best[llama_pp512]}" "${best[exact_prefill_tok_s]}" "${best[fast_prefill_tok_s]}"
  row "decode 64 (tok/s)" "${best[llama_tg64]}" "${best[exact_decode_tok_s]}" "${best[fast_decode_tok_s]}"
  mb() { python3 -c "print($1 / 1e6)"; }
  printf '| peak RSS (MB) | %.0f | %.0f | %.2f | %.0f | %.2f |\n' \
    "$(mb "${best[llama_rss]}")" "$(mb "${best[exact_rss]}")" "$(ratio "${best[exact_rss]}" "${best[llama_rss]}")" \
    "$(mb "${best[fast_rss]}")" "$(ratio "${best[fast_rss]}" "${best[llama_rss]}")"
  echo
  unset best
done
