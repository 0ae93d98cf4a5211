#!/usr/bin/env bash
# One SASRec training step (batch 128 × 50, 20k items, full-softmax CE, AdamW) with the
# weighted-sum plan built from the plugin, the same fusion written by hand in candle, and ID-only
# SASRec, alternating step by step; medians. Usage: bench/fusion/run.sh [STEPS] [N_ITEMS]
# PROFILE=dev reuses the test build (opt-level 2 for every crate) instead of a release build in
# its own target directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-2}"
profile="${PROFILE:-release}"
if [ "$profile" = dev ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
    flag=()
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target-rel}"
    flag=(--release)
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo plugins -q
echo "profile $profile; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run -q "${flag[@]}" -p encore --example fusion_step -- "$CARGO_TARGET_DIR/wasm32-wasip2/release" "${1:-30}" "${2:-20000}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
