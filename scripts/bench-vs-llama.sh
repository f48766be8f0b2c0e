#!/usr/bin/env bash
# Side-by-side speed of gemma-rs and llama.cpp on the same model, threads and
# token counts, alternating runs, printed as a markdown table with ratios.
#
#   scripts/bench-vs-llama.sh [MODEL.gguf] [RUNS]
#
# With GEMMA_CPP (a gemma.cpp `gemma` binary you built yourself; this
# script never builds it) and GEMMA_CPP_WEIGHTS (an .sbs file, e.g. from
# `gemma convert`), gemma.cpp joins the alternation and the table: its
# prefill of the same token counts (a prompt text sized with gemma-rs's
# tokenizer) and its decode of 64 tokens, from its own timing lines.
#
# With GEMMA_BASE (another `gemma` binary, e.g. a release build of an
# earlier commit), that build joins the alternation too, and a third table
# gives this build's rates over the base's, with each side's run-to-run
# spread ((max - min) / max over the runs): a ratio below 1 by less than
# the spread is noise.
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
gemma_run() { # threads precision [binary]
  "${3:-$gemma}" bench --model "$model" --threads "$1" --precision "$2" --json
}
base="${GEMMA_BASE:-}"
if [ -n "$base" ] && [ ! -x "$base" ]; then
  echo "GEMMA_BASE must be an executable gemma binary" >&2
  exit 2
fi

gcpp="${GEMMA_CPP:-}"
gcpp_weights="${GEMMA_CPP_WEIGHTS:-}"
if [ -n "$gcpp" ] && { [ ! -x "$gcpp" ] || [ ! -f "$gcpp_weights" ]; }; then
  echo "GEMMA_CPP must be an executable and GEMMA_CPP_WEIGHTS an .sbs file" >&2
  exit 2
fi
prompts="$(mktemp -d)"
trap 'rm -rf "$prompts"' EXIT
# A prompt text of at most N tokens by gemma-rs's tokenizer (whole words, no
# BOS; gemma.cpp with --wrapping 0 counts the same), in $prompts/N.txt.
make_prompt() {
  python3 - "$gemma" "$1" "$prompts/$1.txt" <<'PY'
import json, subprocess, sys
gemma, want, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
words = ("The history of the city begins with a small settlement on the river, "
         "where traders met to exchange salt, grain and cloth. Over the centuries "
         "the town grew into a market centre, then a fortified city. ").split() * 64
def count(n):
    text = " ".join(words[:n])
    ids = subprocess.run([gemma, "tokenize", "--text", text, "--json"],
                         capture_output=True, text=True, check=True).stdout
    return len(json.loads(ids))
lo, hi = 1, len(words)
while lo < hi:  # the most words whose tokens fit in `want`
    mid = (lo + hi + 1) // 2
    lo, hi = (mid, hi) if count(mid) <= want else (lo, mid - 1)
open(out, "w").write(" ".join(words[:lo]))
PY
}
# gemma.cpp's prefill and decode tok/s for a prompt file, from its timing
# lines ("Prefill: ... (X tokens / sec)", "Generate: ... (Y tokens / sec)").
gcpp_run() { # threads prompt-file generated-tokens
  "$gcpp" --weights "$gcpp_weights" --prompt_file "$2" --max_generated_tokens "$3" \
    --temperature 0 --num_threads "$1" --verbosity 2 --wrapping 0 2>&1 |
    python3 -c '
import re, sys
text = sys.stdin.read()
rate = lambda what: re.search(what + r": .*?\(([0-9.]+) tokens / sec\)", text)
pre, gen = rate("Prefill"), rate("Generate")
print(pre.group(1) if pre else 0, gen.group(1) if gen else 0)'
}
if [ -n "$gcpp" ]; then
  make_prompt 64
  make_prompt 512
fi

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "# gemma-rs vs llama.cpp ($(dirname "$(dirname "$(dirname "$bench_llama")")" | xargs basename))${gcpp:+ and gemma.cpp ($(basename "$gcpp_weights"))}"
echo
echo "CPU: $cpu, $(nproc) cores; model: $(basename "$model"); $runs alternating runs, best of each"
echo

for threads in 1 2; do
  declare -A best=()
  declare -A worst=()
  for ((r = 0; r < runs; r++)); do
    while read -r line; do
      n_p="$(echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["n_prompt"], d["n_gen"], d["avg_ts"])')"
      read -r np ng ts <<<"$n_p"
      key="llama_pp$np"
      [ "$ng" != 0 ] && key="llama_tg$ng"
      prev="${best[$key]:-0}"
      best[$key]="$(python3 -c "print(max($prev, $ts))")"
    done < <(llama_run "$threads")
    if [ -n "$gcpp" ]; then
      read -r pp _ < <(gcpp_run "$threads" "$prompts/64.txt" 1)
      best[gcpp_pp64]="$(python3 -c "print(max(${best[gcpp_pp64]:-0}, $pp))")"
      read -r pp tg < <(gcpp_run "$threads" "$prompts/512.txt" 64)
      best[gcpp_pp512]="$(python3 -c "print(max(${best[gcpp_pp512]:-0}, $pp))")"
      best[gcpp_tg64]="$(python3 -c "print(max(${best[gcpp_tg64]:-0}, $tg))")"
    fi
    for precision in exact fast; do
      for side in "" base_; do
        [ -n "$side" ] && [ -z "$base" ] && continue
        bin="$gemma"
        [ -n "$side" ] && bin="$base"
        json="$(gemma_run "$threads" "$precision" "$bin")"
        for k in prefill_64_tok_s prefill_tok_s decode_tok_s; do
          v="$(echo "$json" | python3 -c "import json,sys; print(json.load(sys.stdin)['$k'])")"
          key="${side}${precision}_$k"
          best[$key]="$(python3 -c "print(max(${best[$key]:-0}, $v))")"
          worst[$key]="$(python3 -c "print(min(${worst[$key]:-1e30}, $v))")"
        done
        best[${side}${precision}_rss]="$(echo "$json" | python3 -c "import json,sys; print(json.load(sys.stdin)['peak_rss_bytes'])")"
      done
    done
  done
  best[llama_rss]="$(peak_rss "$bench_llama" -m "$model" -t "$threads" -p 512 -n 64 -r 1)"
  if [ -n "$gcpp" ]; then
    best[gcpp_rss]="$(peak_rss "$gcpp" --weights "$gcpp_weights" --prompt_file "$prompts/512.txt" \
      --max_generated_tokens 64 --temperature 0 --num_threads "$threads" --wrapping 0)"
  fi
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
  if [ -n "$gcpp" ]; then
    echo "| test | gemma.cpp | gemma-rs exact | ratio | gemma-rs fast | ratio |"
    echo "|---|---|---|---|---|---|"
    row "prefill 64 (tok/s)" "${best[gcpp_pp64]}" "${best[exact_prefill_64_tok_s]}" "${best[fast_prefill_64_tok_s]}"
    row "prefill 512 (tok/s)" "${best[gcpp_pp512]}" "${best[exact_prefill_tok_s]}" "${best[fast_prefill_tok_s]}"
    row "decode 64 (tok/s)" "${best[gcpp_tg64]}" "${best[exact_decode_tok_s]}" "${best[fast_decode_tok_s]}"
    printf '| peak RSS (MB) | %.0f | %.0f | %.2f | %.0f | %.2f |\n' \
      "$(mb "${best[gcpp_rss]}")" "$(mb "${best[exact_rss]}")" "$(ratio "${best[exact_rss]}" "${best[gcpp_rss]}")" \
      "$(mb "${best[fast_rss]}")" "$(ratio "${best[fast_rss]}" "${best[gcpp_rss]}")"
    echo
  fi
  if [ -n "$base" ]; then
    echo "| test | base | this build | ratio | base spread | this spread |"
    echo "|---|---|---|---|---|---|"
    spread() { python3 -c "print(($1 - $2) / $1 if $1 else 0)"; }
    for precision in exact fast; do
      for k in prefill_64_tok_s prefill_tok_s decode_tok_s; do
        b="${best[base_${precision}_$k]}" n="${best[${precision}_$k]}"
        printf '| %s %s | %.1f | %.1f | %.3f | %.3f | %.3f |\n' "$precision" "$k" "$b" "$n" "$(ratio "$n" "$b")" \
          "$(spread "$b" "${worst[base_${precision}_$k]}")" "$(spread "$n" "${worst[${precision}_$k]}")"
      done
    done
    echo
  fi
  unset best worst
done
