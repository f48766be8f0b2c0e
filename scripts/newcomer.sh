#!/usr/bin/env bash
# A newcomer's first hour, replayed: clones this repository into a temporary
# folder with a fresh HOME and cargo home (rustup's toolchains are shared,
# read-only), then runs README.md's quick-start command and its test command
# exactly as README prints them, read from the README itself (the fenced
# block after each `<!-- newcomer: ... -->` marker). Fails if either fails
# and prints each one's time. Takes tens of minutes: everything is fetched
# and built from nothing, the model included.
#
#   scripts/newcomer.sh [REPO]     # REPO: what to clone (default: this one)
set -euo pipefail
repo="${1:-$(cd "$(dirname "$0")/.." && pwd)}"

# The block after a marker: its first line that is not a fence or blank.
readme_command() {
  awk -v marker="<!-- newcomer: $1 -->" '
    $0 == marker { found = 1; next }
    found && /^```/ { if (inside) exit; inside = 1; next }
    inside && NF { print; exit }
  ' "$2"
}

# The installed toolchains stay (a newcomer has them): rustup's home and the
# default toolchain's bin folder, found before HOME changes.
export RUSTUP_HOME="${RUSTUP_HOME:-$(rustup show home)}"
toolchain_bin="$(dirname "$(rustup which cargo)")"

work="$(mktemp -d "${TMPDIR:-/tmp}/gemma-newcomer.XXXXXX")"
echo "newcomer: working in $work (removed at the end when everything passes)"
export HOME="$work/home"
export CARGO_HOME="$work/cargo"
mkdir -p "$HOME" "$CARGO_HOME"
# Nothing of this machine's caches or settings may leak in.
unset CARGO_TARGET_DIR GEMMA_MODEL GEMMA_RS_CACHE XDG_CACHE_HOME PYTHONPATH
unset RUSTFLAGS CARGO_BUILD_JOBS PYENV_ROOT PYENV_VERSION
# The system's own python3 and tools, no per-user installs.
export PATH="$CARGO_HOME/bin:$toolchain_bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

git clone --quiet "$repo" "$work/gemma-rs"
cd "$work/gemma-rs"

status=0
for what in "first-run command" "test command"; do
  cmd="$(readme_command "$what" README.md)"
  if [ -z "$cmd" ]; then
    echo "newcomer: README.md has no block after <!-- newcomer: $what -->" >&2
    exit 2
  fi
  echo
  echo "=== $what: $cmd"
  log="$work/${what// /-}.log"
  start=$(date +%s)
  if bash -c "$cmd" >"$log" 2>&1; then
    result=passed
  else
    result="FAILED (exit $?)"
    status=1
  fi
  secs=$(( $(date +%s) - start ))
  tail -n 15 "$log"
  printf 'newcomer: %s %s in %dm%02ds (log: %s)\n' "$what" "$result" $((secs / 60)) $((secs % 60)) "$log"
done

if [ "$status" = 0 ]; then
  rm -rf "$work"
  echo "newcomer: both README commands passed"
fi
exit "$status"
