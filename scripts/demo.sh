#!/usr/bin/env bash
# The main job on the embedded default sample: prepare the data, train SASRec, evaluate it and a
# most-popular baseline by full ranking through the metric plugins. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo plugins
cargo run -p encore -- run configs/default.toml --out runs/default
