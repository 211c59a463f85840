#!/usr/bin/env bash
# Overlay benchmarks with real agents in network namespaces (needs root): attach-to-reachable
# latency at 3 and 10 hosts, attach/detach throughput, agent memory with 1,000 endpoints.
# Prints a table; JSON in bench-results/overlay.json. Extra arguments go to the benchmark
# (see --help), e.g. --only latency --hosts 10 --samples 20.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p agent --bin swarmnet -p cluster-tests --bin overlay-bench
exec target/release/overlay-bench "$@"
