#!/usr/bin/env bash
# The one-command benchmark: builds order-service and the benchmark (release), then
# measures SQLite and PostgreSQL. With no arguments it updates BENCHMARKS.md and
# docs/benchmark.svg; any arguments replace those (e.g. `--smoke`, `--only sqlite`).
# See tools/bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

given="$*"
if [ "$#" -eq 0 ]; then
  set -- --out BENCHMARKS.md --svg docs/benchmark.svg
fi
cargo build --release -p order-service -p bench
target="${CARGO_TARGET_DIR:-target}"
BENCH_COMMAND="tools/bench/run.sh${given:+ $given}" exec "$target/release/bench" "$@"
