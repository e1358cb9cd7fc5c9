#!/usr/bin/env bash
# shoal's main job on one machine: a sandbox cluster of hosts in network
# namespaces, tasks on different hosts reaching each other over the VXLAN
# overlay, and a service answering on every node through the routing mesh.
# `target/release/shoal sandbox down` removes it all.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
cargo build --release --bin shoal
if target/release/shoal sandbox status >/dev/null 2>&1; then
  target/release/shoal sandbox down >/dev/null
fi
exec target/release/shoal sandbox up --nodes "${SHOAL_NODES:-3}"
