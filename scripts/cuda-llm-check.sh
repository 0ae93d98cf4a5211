#!/usr/bin/env bash
# Device check for the LLM side on CUDA (docs/llm.md): E4SRec on SmolLM2-135M-Instruct and
# zero-shot ranking, through `encore run --device cuda:0`, on the embedded sample. Run from the
# root of a checkout on the GPU machine. A call carries at most 64 MiB, and the GGUF is 98 MB, so
# it arrives in parts over earlier calls, kept in /root/encore-keep while the machine stays warm:
#   bash scripts/cuda-llm-check.sh stash     # with .gpu/p1/gguf.part00 (then .gpu/p2/gguf.part01)
#   bash scripts/cuda-llm-check.sh run       # with .gpu/run/: encore.xz (the stripped cuda build),
#                                            # plugins/*.wasm, smoke.toml, gpu.toml, gguf.sha256
# `run` joins the parts, checks their SHA-256, runs smoke.toml (a few steps of everything, to fail
# fast) and then gpu.toml, each with its own timeout, and writes their logs to $OUT.
set -u
S=$(cd "$(dirname "$0")" && pwd)
O=${OUT:-/tmp/out}; mkdir -p "$O"; K=/root/encore-keep; mkdir -p "$K"
exec > >(tee -a "$O/00-llm.log") 2>&1
t0=$(date +%s.%N)
el() { echo "[+$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s] $*"; }
for p in .gpu/p1/gguf.part* .gpu/p2/gguf.part*; do [ -f "$p" ] && cp "$p" "$K/" && el "kept $p"; done
if [ "${1:-run}" = stash ]; then ls -la "$K"; exit 0; fi
R=$PWD/.gpu/run
cat "$K"/gguf.part* > "$K/smollm2.gguf"
want=$(cat "$R/gguf.sha256"); got=$(sha256sum "$K/smollm2.gguf" | cut -c1-64)
[ "$want" = "$got" ] || { el "GGUF checksum mismatch: $got, expected $want"; ls -la "$K"; exit 1; }
python3 - "$R" <<'PY'
import lzma, pathlib, sys
r = pathlib.Path(sys.argv[1])
for p in list(r.glob('*.xz')) + list((r / 'plugins').glob('*.xz')):
    p.with_suffix('').write_bytes(lzma.decompress(p.read_bytes()))
PY
chmod +x "$R/encore"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; echo "nproc $(nproc)"; uptime
. "$S/cuda-libs.sh"
export ENCORE_PLUGIN_PATH="$R/plugins" CANDLE_NUM_THREADS=1
"$R/encore" --version || true
run() { # name timeout config
  el "start $1 (timeout $2 s)"
  local s=$(date +%s.%N)
  timeout "$2" "$R/encore" run "$R/$3" --device "${DEVICE:-cuda:0}" --out "$K/out-$1" --quiet > "$O/$1.log" 2>&1
  local rc=$?
  el "end $1 rc=$rc wall=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
  grep -v '^  data/sample' "$O/$1.log" | tail -60
  for f in results.parquet comparisons.parquet zero_shot_results.parquet; do
    [ -f "$K/out-$1/$f" ] && cp "$K/out-$1/$f" "$O/$1-$f"
  done
  return $rc
}
run smoke 150 smoke.toml || { el "smoke failed: stopping"; exit 1; }
run gpu "${GPU_TIMEOUT:-330}" gpu.toml
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
