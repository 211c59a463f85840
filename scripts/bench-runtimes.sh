#!/usr/bin/env bash
# Container start to network-ready (needs root): podman, ctr and dockerd each through swarmnet
# (swarmnet-cni, the Docker plugin) and through their own bridge network in the same run;
# p50/p99 and the swarmnet/bridge ratios. Prints a table; JSON in
# bench-results/runtimes-<date>.json. Extra arguments go to the benchmark (see --help),
# e.g. --runs 50 --only docker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p agent --bin swarmnet -p cni --bin swarmnet-cni -p cluster-tests --bin runtimes-bench
SWARMNET_CNI_BIN="$PWD/target/release/swarmnet-cni" exec target/release/runtimes-bench "$@"
