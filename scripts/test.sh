#!/usr/bin/env bash
# Runs every check and test of shoal: formatting, lints, unit and property
# tests, the end-to-end scenarios in network namespaces (root), and a short
# fuzzing pass when the nightly toolchain is there. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --release -- -D warnings

echo "== build"
cargo build --release --bin shoal

echo "== tests (unit, property, netns end-to-end)"
cargo test --release --workspace --no-fail-fast -- --test-threads="${SHOAL_TEST_THREADS:-4}"

echo "== fuzz (bounded)"
./scripts/fuzz.sh "${SHOAL_FUZZ_SECONDS:-15}"
