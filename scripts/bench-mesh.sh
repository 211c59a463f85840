#!/usr/bin/env bash
# Published-port (routing mesh) benchmarks (needs root): short connections/s through the mesh
# vs straight to a backend in the same run; the cost of one more published port on a host
# that publishes 1,000 (host table executor, and service create -> host table end to end).
# Prints a table; JSON in bench-results/mesh.json. Extra arguments go to the benchmark (see
# --help), e.g. --only http --connections 5000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p agent --bin swarmnet -p cluster-tests --bin mesh-bench --bin probe
exec target/release/mesh-bench "$@"
