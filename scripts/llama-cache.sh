#!/usr/bin/env bash
# Sourced by the scripts that compare with llama.cpp: builds llama.cpp once,
# from the source package of llama-cpp-python (its sdist vendors llama.cpp),
# with GGML_NATIVE=ON and AMX off, into ~/.cache/gemma-rs/llama.cpp-<version>/.
#
#   llama_dir   prints that directory (building it first if needed); its
#               build/bin/llama-bench, build/src/libllama.a and the ggml
#               libraries in build/ggml/src are what the scripts use.

llama_dir() {
  local cache="$HOME/.cache/gemma-rs"
  mkdir -p "$cache"
  local found
  found="$(ls -d "$cache"/llama.cpp-*/build/bin/llama-bench 2>/dev/null | head -n1 || true)"
  if [ -n "$found" ]; then
    dirname "$(dirname "$(dirname "$found")")"
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
  echo "$src"
}
