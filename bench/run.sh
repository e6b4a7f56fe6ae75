#!/usr/bin/env bash
# Benchmarks (docs/PERFORMANCE.md): cvm-unlock fetch against the local test KBS, side by side in the
# same run with clevis decrypt against a tang server on loopback. Needs root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
exec node_modules/.bin/bun bench/bench.ts "$@"
