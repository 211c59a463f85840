#!/usr/bin/env bash
# The whole test suite: unit, scenario, simulation, wire fixtures, property tests and
# multi-process tests on loopback. Run as root on Debian 12 with a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cargo nextest run --workspace --profile ci --no-fail-fast
cargo test --workspace --doc
