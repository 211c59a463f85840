#!/usr/bin/env bash
# Service balancing benchmarks (needs root): programming 1,000 services x 10 backends into one
# container namespace (vs nft -f of the same ruleset), a backend drain reaching every
# container on 10 hosts, short HTTP connections through a VIP vs straight to the backend.
# Prints a table; JSON in bench-results/services.json. Extra arguments go to the benchmark
# (see --help), e.g. --only http --connections 5000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p agent --bin swarmnet -p cluster-tests --bin services-bench --bin probe
exec target/release/services-bench "$@"
