#!/usr/bin/env bash
# DNS benchmark (needs root): the agent's embedded resolver against dnsmasq, same names
# (1,000 endpoints + 100 services by default) and the same upstream, measured with dnsperf:
# max queries per second and p50/p99 latency at a fixed rate, for internal and forwarded
# names. Prints a table; JSON in bench-results/dns-<date>.json. Extra arguments go to the
# benchmark (see --help), e.g. --seconds 5 --rate 2000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p cluster-tests --bin dns-bench
exec target/release/dns-bench "$@"
