#!/usr/bin/env bash
# The main job: `swarmnet demo`. Three hosts in network namespaces on this machine, one real
# `swarmnet agent` each, a VXLAN overlay network between them and one container per host;
# shows the pings and the CLI's tables, then tears everything down (also on Ctrl-C).
# Run as root on Debian 12 with a Rust toolchain. Arguments go to `swarmnet demo` (e.g. --keep).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (the demo creates network namespaces, bridges and VXLAN devices)" >&2
  exit 1
fi

need_apt=()
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "demo.sh: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

echo "demo.sh: building swarmnet (release)"
cargo build --release -p agent --bin swarmnet --features demo
exec target/release/swarmnet demo "$@"
