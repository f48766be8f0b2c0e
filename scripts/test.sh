#!/usr/bin/env bash
# README's test command, and what .ci/run runs: installs what the tests need
# beyond the Rust toolchain, gcc and python3, then runs
# `cargo test --workspace`, or `cargo test ARGS...` when given arguments
# (e.g. `scripts/test.sh -p gemma-cli --test serve`).
#
# - g++ (the C API header must compile as C++) and valgrind (checks the C
#   API for leaks): apt-get, as root or through sudo.
# - an OpenCL driver: where none is installed (no ICD file in
#   /etc/OpenCL/vendors), PoCL, which runs OpenCL on the CPU (apt-get
#   `pocl-opencl-icd` and the ICD loader `ocl-icd-libopencl1`), so the GPU
#   kernels are executed and checked on every machine. Without any, the
#   OpenCL tests print NOT RUN, except under CI, where they fail.
# - the `openai` and `prometheus-client` Python packages (the server tests
#   talk to `gemma serve` with OpenAI's own client and parse its /metrics
#   with Prometheus' own parser): pip, into ~/.cache/gemma-rs/python when
#   python3 cannot import them already, so nothing is installed system-wide.
# - NVRTC 12.x (the `nvidia-cuda-nvrtc-cu12` wheel: gemma-gpu's cuda_compile
#   test compiles every kernel as CUDA C for sm_61, the GTX 1050, which CUDA
#   13 dropped): pip, into the same ~/.cache/gemma-rs/python, where the test
#   loads libnvrtc.so.12 from; no CUDA toolkit or GPU is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${GEMMA_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gemma-rs}"

missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v valgrind >/dev/null || missing+=(valgrind)
if ! compgen -G '/etc/OpenCL/vendors/*.icd' >/dev/null || ! ldconfig -p | grep -q 'libOpenCL\.so\.1 '; then
  missing+=(pocl-opencl-icd ocl-icd-libopencl1)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  else
    echo "scripts/test.sh: the tests need ${missing[*]}; install them (Debian/Ubuntu:" \
      "sudo apt-get install ${missing[*]}) and run this again" >&2
    exit 1
  fi
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python packages the server tests drive it with.
py_imports='import openai, prometheus_client'
if ! python3 -c "$py_imports" 2>/dev/null; then
  py="$cache/python"
  export PYTHONPATH="$py${PYTHONPATH:+:$PYTHONPATH}"
  if ! python3 -c "$py_imports" 2>/dev/null; then
    echo "scripts/test.sh: installing openai and prometheus-client into $py" >&2
    mkdir -p "$py"
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --target "$py" openai prometheus-client
  fi
fi

# NVRTC for the CUDA compile check (gpu/tests/cuda_compile.rs).
nvrtc="$cache/python/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
if [ -z "${GEMMA_NVRTC:-}" ] && [ ! -e "$nvrtc" ]; then
  echo "scripts/test.sh: installing nvidia-cuda-nvrtc-cu12 12.x into $cache/python" >&2
  mkdir -p "$cache/python"
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --target "$cache/python" 'nvidia-cuda-nvrtc-cu12==12.*'
fi

if [ $# -gt 0 ]; then
  exec cargo test "$@"
fi
exec cargo test --workspace
