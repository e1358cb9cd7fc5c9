#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS_PER_TARGET seconds
# (default 20) and fails on the first crash. Without the nightly toolchain
# or cargo-fuzz (scripts/setup.sh installs both) it says so and succeeds.
#
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET]
set -euo pipefail

seconds="${1:-20}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: SECONDS_PER_TARGET must be a positive integer, got '$seconds'" >&2
  exit 2
fi

cd "$(dirname "$0")/.."

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: fuzzing skipped: the nightly toolchain or cargo-fuzz is missing (scripts/setup.sh installs them)"
  exit 0
fi

cargo +nightly fuzz build -O
for target in $(cargo +nightly fuzz list); do
  echo "fuzz.sh: $target for ${seconds}s"
  # Crashes land in fuzz/artifacts/$target/; the non-zero exit stops the script.
  cargo +nightly fuzz run -O "$target" -- -max_total_time="$seconds"
done
echo "fuzz.sh: no crash in $(cargo +nightly fuzz list | wc -l) targets"
