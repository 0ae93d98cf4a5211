#!/usr/bin/env bash
# The full-softmax loss step (logits (256×64)·(64×20000), cross-entropy, backward) in encore
# (matmuls alone, candle's composite ops, the fused kernel) and in PyTorch, one after the other,
# 2 threads each.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 RAYON_NUM_THREADS=2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target-rel}"
venv="${ENCORE_TORCH_VENV:-$HOME/.cache/encore-venv-torch}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo run -q --release -p encore --example fused_ce
"$venv/bin/python" bench/encoders/fused_ce_torch.py 2
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
