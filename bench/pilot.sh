#!/usr/bin/env bash
# Pilot at scale (issue 5): 1,000 services x 5 endpoints, 200 simulated sidecars.
# Builds the release `bosun` binary (the pilot under test) and runs the xds_push benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p bosun
BOSUN_BIN="${BOSUN_BIN:-$PWD/target/release/bosun}" cargo bench --locked -p bosun-pilot --bench xds_push
