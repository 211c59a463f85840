#!/usr/bin/env bash
# The whole test suite: unit, scenario, simulation, wire fixtures, property tests, multi-process
# tests on loopback, and the multi-host tests in network namespaces (those need root; without it
# they print "skipped: <reason>"). Run as root on Debian 12 with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cargo test --workspace --doc
cargo nextest run --workspace --profile ci --no-fail-fast
