#!/usr/bin/env bash
# Device check for `encore --features cuda` (docs/cuda.md): run from the root of a checkout on the
# GPU machine as `bash scripts/cuda-device-check.sh`, with .gpu/ holding what it needs:
#   .gpu/encore[.xz]         the stripped cuda build (xz-compressed to fit a 64 MiB transfer)
#   .gpu/plugins/*.wasm[.xz] recall, ndcg, mrr
#   .gpu/sample/, sample.toml  `encore data prepare --config configs/data/sample.toml --out .gpu/sample`
#                              and an `encore train` config with `prepared = "sample"`
#   .gpu/synth/, synth.toml    `encore data synth --users 300 --tracks 20000 --seed 7 --gzip`, prepared
#                              the same way (18523 items), 3 epochs, batch 256
# Trains SASRec on each with --device cuda:0 and --device cpu (RAYON_NUM_THREADS=16) and writes
# logs (per-epoch seconds with -v) and summary.toml files to $OUT. Each step has its own timeout.
set -u
S=$(cd "$(dirname "$0")" && pwd)
G=$PWD/.gpu; O=${OUT:-/tmp/out}; mkdir -p "$O"; cd "$G"
exec > >(tee -a "$O/00-main.log") 2>&1
t0=$(date +%s.%N)
el() { echo "[+$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s] $*"; }
el "unpack"
python3 - <<'PY'
import lzma, pathlib
for p in list(pathlib.Path('.').glob('*.xz')) + list(pathlib.Path('plugins').glob('*.xz')):
    p.with_suffix('').write_bytes(lzma.decompress(p.read_bytes()))
PY
chmod +x encore
nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "nproc $(nproc)"; uptime
. "$S/cuda-libs.sh"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldd ./encore | grep -E 'libcuda|cublas|curand|nvrtc|cudart|not found'
./encore --version || true
run() { # name device timeout config
  el "start $1 ($2, $4, timeout $3 s)"
  local s=$(date +%s.%N)
  RAYON_NUM_THREADS=16 timeout "$3" ./encore --plugins plugins -v train "$4" --device "$2" --out "out-$1" --quiet > "$O/$1.log" 2>&1
  local rc=$?
  el "end $1 rc=$rc wall=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s"
  tail -22 "$O/$1.log"
  [ -f "out-$1/summary.toml" ] && { echo "== $1 summary"; cat "out-$1/summary.toml"; } >> "$O/summaries.txt"
}
run sample-cuda cuda:0 60 sample.toml
run sample-cpu cpu 60 sample.toml
run synth-cuda cuda:0 120 synth.toml
run synth-cpu cpu 100 synth.toml
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
el "done"
