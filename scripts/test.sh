#!/usr/bin/env bash
# The whole test suite: unit, scenario, simulation, wire fixtures, property tests, multi-process
# tests on loopback, and the multi-host tests in network namespaces (those need root; without it
# they print "skipped: <reason>"), and the kernel-VM tests (cluster-tests/tests/vm_*.rs: qemu
# guests with Debian's stock kernel for IPVS and ESP, which the CI kernel lacks; the kit is
# cached in target/vm-cache). Run as root on Debian 12 with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cargo test --workspace --doc
cargo nextest run --workspace --profile ci --no-fail-fast
