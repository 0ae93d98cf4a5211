#!/usr/bin/env bash
# The main job on the embedded default sample. Installs what it needs: the wasm32-wasip2 target.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo plugins
cargo run -p encore -- plugin list
cargo run -p encore -- eval --rankings data/sample/rankings.parquet --out results/sample-eval.parquet
