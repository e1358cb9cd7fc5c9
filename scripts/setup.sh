#!/usr/bin/env bash
# Installs everything shoal's build, tests and benchmarks need on a fresh
# Debian 12 machine. Idempotent: a second run installs nothing new.
set -euo pipefail

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages and the tests create network namespaces)" >&2
    exit 1
  fi
}
need_root

# Debian packages: network tools the tests drive, the peers the benchmarks compare against,
# and Chromium for the visualizer's headless browser test.
pkgs=(iproute2 iputils-ping iperf3 curl nftables haproxy wrk ethtool tcpdump procps psmisc dnsutils chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust components used by `cargo fmt` and `cargo clippy` in the test script.
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

# cargo-fuzz for scripts/fuzz.sh, built with the nightly toolchain when there is one.
if rustup toolchain list 2>/dev/null | grep -q '^nightly' && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "setup.sh: installing cargo-fuzz"
  cargo +nightly install cargo-fuzz --locked
fi
