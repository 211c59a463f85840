#!/usr/bin/env bash
# networkdb benchmarks: simulation at 100 and 1,000 nodes, real processes on loopback
# (10/20/30 nodes), HashiCorp serf in the same run. Prints a table; JSON in bench-results/.
# Extra arguments go to the benchmark (see --help), e.g. --only propagation,serf --nodes 20.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p cluster-tests --bin networkdb-node --bin networkdb-bench
exec target/release/networkdb-bench "$@"
