#!/usr/bin/env bash
# Run the gateway: setup (idempotent), then `sluice serve` from a release build.
# With no arguments it serves the built-in config (model groups mock, mock-slow, mock-embedding).
#
#   scripts/run.sh                                  # built-in config on its default address
#   scripts/run.sh --config my.yaml                 # a LiteLLM-style config
#   scripts/run.sh --listen 127.0.0.1:4000          # any `sluice serve` option
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
exec cargo run --release --bin sluice -- serve "$@"
