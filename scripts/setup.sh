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
# engine's linker and the checks that its programs attach and go; runc and
# tini: the OCI runtime image tasks run with, and their init; busybox-static:
# the payload of the images the tests build; docker-registry, skopeo and
# umoci: the registry the image tests push to and pull from, and the tools
# that build and push their images; crun: the second OCI runtime.
pkgs=(iproute2 iputils-ping iperf3 curl nftables haproxy wrk ethtool tcpdump procps psmisc dnsutils
  chromium llvm-22-dev libpolly-22-dev bpftool runc tini busybox-static
  docker-registry skopeo umoci crun)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No package may start a service here (a registry or a daemon in the
  # machine's own namespace): policy-rc.d refuses them while we install.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
  # docker-registry enables a service on :5000 for the next boot; shoal's
  # sandbox and tests run their own registries in namespaces.
  if [ -d /run/systemd/system ]; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
fi

# Rust components used by `cargo fmt` and `cargo clippy` in the test script.
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

# cargo-fuzz for scripts/fuzz.sh, built with the nightly toolchain when there is one.
if rustup toolchain list 2>/dev/null | grep -q '^nightly' && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "setup.sh: installing cargo-fuzz"
  cargo +nightly install cargo-fuzz --locked
fi

# The eBPF programs build with one pinned nightly, under the name
# dataplane/build.rs uses: its LLVM must be the 22 that bpf-linker reads, so
# a rustup update of `nightly` cannot break the build. This machine's
# `nightly` is usually that very build, which is then copied under the name.
EBPF_NIGHTLY=nightly-2026-05-20
EBPF_NIGHTLY_COMMIT=e50aa6fba
EBPF_TOOLCHAIN=shoal-bpf-$EBPF_NIGHTLY
if ! rustup run "$EBPF_TOOLCHAIN" rustc -V >/dev/null 2>&1; then
  toolchains="${RUSTUP_HOME:-$HOME/.rustup}/toolchains"
  if rustup run nightly rustc -V 2>/dev/null | grep -q "$EBPF_NIGHTLY_COMMIT"; then
    echo "setup.sh: copying the installed nightly as $EBPF_TOOLCHAIN"
    rustup component add rust-src --toolchain nightly
    rm -rf "$toolchains/$EBPF_TOOLCHAIN.tmp"
    cp -a "$(rustup run nightly rustc --print sysroot)" "$toolchains/$EBPF_TOOLCHAIN.tmp"
    mv "$toolchains/$EBPF_TOOLCHAIN.tmp" "$toolchains/$EBPF_TOOLCHAIN"
  else
    echo "setup.sh: installing $EBPF_NIGHTLY"
    rustup toolchain install "$EBPF_NIGHTLY" --profile minimal --component rust-src
    rustup toolchain link "$EBPF_TOOLCHAIN" "$(rustup run "$EBPF_NIGHTLY" rustc --print sysroot)"
  fi
fi
ebpf_sysroot="$(rustup run "$EBPF_TOOLCHAIN" rustc --print sysroot)"
if [ ! -d "$ebpf_sysroot/lib/rustlib/src/rust/library" ]; then
  if rustup run nightly rustc -V 2>/dev/null | grep -q "$EBPF_NIGHTLY_COMMIT"; then
    # A copy of `nightly` made before it had rust-src: add it there, copy it over.
    rustup component add rust-src --toolchain nightly
    cp -a "$(rustup run nightly rustc --print sysroot)/lib/rustlib/src" "$ebpf_sysroot/lib/rustlib/"
  else
    rustup component add rust-src --toolchain "$EBPF_NIGHTLY"
  fi
fi
if ! command -v bpf-linker >/dev/null 2>&1; then
  echo "setup.sh: installing bpf-linker"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo "+$EBPF_TOOLCHAIN" install bpf-linker@0.13.0 --locked \
    --no-default-features --features llvm-22
fi
