#!/usr/bin/env bash
# Benchmarks in kernel-VM guests (needs root and qemu; Debian's stock kernel, which has ESP and
# IPVS): TCP throughput over an encrypted vs a clear overlay between two guests running real
# agents (iperf3), and the nftables vs IPVS balancer in one guest (programming 1,000 services
# x 10 backends, one change, short connections per second through a VIP). Prints a table;
# JSON in bench-results/vm.json and a dated copy bench-results/vm-YYYY-MM-DD.json. Extra
# arguments go to the benchmark (see --help), e.g. --only lb --runs 5.
# Under TCG (no usable KVM) the guests' CPU is emulated: read the ratios, not the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p agent --bin swarmnet -p cluster-tests --bin vm-bench --bin vm-exec --bin probe
target/release/vm-bench "$@"
out=bench-results/vm.json
for a in "$@"; do case "$a" in --out=*) out=${a#--out=} ;; esac; done
prev=""
for a in "$@"; do [ "$prev" = --out ] && out=$a; prev=$a; done
cp "$out" "${out%.json}-$(date -u +%F).json"
echo "dated copy: ${out%.json}-$(date -u +%F).json"
