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

# Debian packages: network tools the tests drive, and the peers the benchmarks compare against.
# chromium: the visualizer's browser test; llvm-22-dev and bpftool: the eBPF
# engine's linker and the checks that its programs attach and go.
pkgs=(iproute2 iputils-ping iperf3 curl nftables haproxy wrk ethtool tcpdump procps psmisc dnsutils
  chromium llvm-22-dev libpolly-22-dev bpftool)
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

# The eBPF programs build with the nightly toolchain, its rust-src and
# bpf-linker (against Debian's LLVM 22).
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  rustup component list --installed --toolchain nightly 2>/dev/null | grep -q '^rust-src' ||
    rustup component add rust-src --toolchain nightly
  if ! command -v bpf-linker >/dev/null 2>&1; then
    echo "setup.sh: installing bpf-linker"
    LLVM_PREFIX=/usr/lib/llvm-22 cargo +nightly install bpf-linker --locked \
      --no-default-features --features llvm-22
  fi
fi
