#!/usr/bin/env bash
# Accuracy side by side: llama.cpp and gemma-rs (exact and fast precision)
# teacher-forced through every golden prompt, scored the same way: mean
# KL(golden || engine) over the 20 golden ids of each of the 198 steps, and
# the worst difference from a golden top-20 logit.
#
#   scripts/kl-vs-llama.sh [THREADS]
#
# llama.cpp comes from scripts/llama-cache.sh (built once into ~/.cache);
# scripts/llama_golden_logits.cpp is compiled against it. gemma-rs's numbers
# come from tests/tests/precision_fast.rs, which computes the same score.
# Not part of CI (CI runs that test, with its bounds).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
threads="${1:-2}"
model="$HOME/.cache/gemma-rs/gemma-3-270m-q4_k_m.gguf"
goldens="$root/tests/data/gemma3-270m/goldens.json"
# shellcheck source=scripts/llama-cache.sh
source "$root/scripts/llama-cache.sh"
llama="$(llama_dir)"
tool="$llama/build/bin/golden-logits"
if [ ! -x "$tool" ] || [ "$root/scripts/llama_golden_logits.cpp" -nt "$tool" ]; then
  b="$llama/build"
  # ggml's CPU backend may use OpenMP; link it when the compiler has it.
  g++ -O2 -std=c++17 "$root/scripts/llama_golden_logits.cpp" \
    -I"$llama/vendor/llama.cpp/include" -I"$llama/vendor/llama.cpp/ggml/include" \
    "$b/src/libllama.a" "$b/ggml/src/libggml.a" "$b/ggml/src/libggml-cpu.a" \
    "$b/ggml/src/libggml-base.a" -lpthread -ldl -fopenmp -o "$tool"
fi
if [ ! -f "$model" ]; then
  (cd "$root" && cargo run --release -q -p gemma-cli -- info >/dev/null)
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 "$root/scripts/golden_kl.py" cases "$goldens" >"$tmp/cases"
"$tool" "$model" "$threads" <"$tmp/cases" 2>/dev/null >"$tmp/llama"
echo "llama.cpp:      $(python3 "$root/scripts/golden_kl.py" score "$goldens" <"$tmp/llama")"
(cd "$root" && cargo test --release -q -p gemma-tests --test precision_fast -- --nocapture 2>&1) |
  grep -E '^exact:' | sed 's/^/gemma-rs:       /'
