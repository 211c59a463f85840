#!/usr/bin/env bash
# The main job, for now: a three-node networkdb cluster on loopback that writes, gossips and
# watches entries (the overlay demo `swarmnet demo` replaces this when the agent lands).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
exec cargo run --release -q -p networkdb --example cluster
