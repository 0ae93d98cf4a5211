#!/usr/bin/env bash
# audio-dsp extraction throughput on 30-second clips: `encore features extract` (symphonia decode,
# rubato resampling 16 kHz -> 22050 Hz, the audio-dsp plugin in the sandbox) against librosa
# computing the same features in Python (bench/features/librosa_features.py), on the same clips,
# in the same run. Prints both rates and their ratio (encore / librosa; > 1: encore is faster).
#
#   bench/features/run.sh              # release build in $CARGO_TARGET_DIR (default ~/.cache/encore-target-rel)
#   PROFILE=dev bench/features/run.sh  # dev build (label the figure as such)
#   N=40 bench/features/run.sh         # clips (default 60)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-60}
PROFILE=${PROFILE:-release}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/encore-target-rel}
VENV=${VENV:-$HOME/.cache/encore-venv-librosa}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import librosa" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q librosa numpy
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo plugins
if [ "$PROFILE" = dev ]; then
  cargo build -p encore
  BIN=$CARGO_TARGET_DIR/debug/encore
else
  cargo build --release -p encore
  BIN=$CARGO_TARGET_DIR/release/encore
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export ENCORE_CACHE_DIR=$WORK/cache
"$BIN" data synth --users 10 --tracks "$N" --rows 20000 --clips "$N" --clip-seconds 30 --out "$WORK/synth" 2>/dev/null
"$BIN" data prepare "$WORK/synth/listens.tsv" --out "$WORK/prep" >/dev/null 2>&1
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), profile $PROFILE"
# Untimed warm-up: compiles the plugin into the cache (as librosa's warm-up clip).
"$BIN" features extract --data "$WORK/prep" --plugin audio-dsp --audio "$WORK/synth/clips" --out "$WORK/warm" --batch 8 --quiet >/dev/null 2>&1
t0=$(date +%s.%N)
"$BIN" features extract --data "$WORK/prep" --plugin audio-dsp --audio "$WORK/synth/clips" --out "$WORK/features" --batch 8 --quiet | tee "$WORK/encore.txt"
t1=$(date +%s.%N)
"$VENV/bin/python" bench/features/librosa_features.py "$WORK/synth/clips" | tee "$WORK/librosa.txt"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK/encore.txt" "$WORK/librosa.txt" "$t0" "$t1" <<'PY'
import re, sys
e = open(sys.argv[1]).read(); l = open(sys.argv[2]).read()
done = int(re.search(r"(\d+) done", e).group(1))
inner = float(re.search(r"\(([\d.]+) tracks/s\)", e).group(1))
wall = done / (float(sys.argv[4]) - float(sys.argv[3]))
lib = float(re.search(r"= ([\d.]+) tracks/s", l).group(1))
print(f"encore audio-dsp: {inner:.2f} tracks/s (extraction), {wall:.2f} tracks/s (whole command, {done} clips of 30 s)")
print(f"librosa:          {lib:.2f} tracks/s")
print(f"ratio encore/librosa: {inner / lib:.2f} (extraction), {wall / lib:.2f} (whole command)")
PY
