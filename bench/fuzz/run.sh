#!/usr/bin/env bash
# bench/fuzz: fuzzes encore's readers of untrusted input (encore::fuzz), each target for MINUTES,
# one after the other: the TSV readers, the config loaders, the rankings reader, the fusion-plan
# validator, audio clips (WAV) and checkpoints. Prints per target the cases run, cases/s, inputs
# accepted and refused, distinct errors, contained panics, crashes, the slowest case and the
# largest allocation peak of a case; exits non-zero when any case crashed, hung or aborted.
# Usage: bench/fuzz/run.sh [MINUTES=10] [TARGET...]  (targets: tsv config rankings fusion-plan
#        wav checkpoint; default all six)
# Env: SEED (default 1), CRASH_DIR (default bench/fuzz/crashes), PROFILE=dev (default: the dev
# profile is optimised here and keeps overflow checks and debug assertions, which find more) or
# release, MAX_MEMORY_GIB (address-space limit of the process, default 16).
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES="${1:-10}"; shift || true
TARGETS=("$@"); [ ${#TARGETS[@]} -gt 0 ] || TARGETS=(tsv config rankings fusion-plan wav checkpoint)
SEED="${SEED:-1}"; PROFILE="${PROFILE:-dev}"; CRASH_DIR="${CRASH_DIR:-$PWD/bench/fuzz/crashes}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
export CANDLE_NUM_THREADS="${CANDLE_NUM_THREADS:-1}"
if [ "$PROFILE" = release ]; then
  cargo build -q --release -p encore --example fuzz
  BIN="$CARGO_TARGET_DIR/release/examples/fuzz"
else
  cargo build -q -p encore --example fuzz
  BIN="$CARGO_TARGET_DIR/debug/examples/fuzz"
fi
# A copy runs, so that a rebuild during a long run does not replace the binary under it.
RUN_BIN="$(mktemp -d)/fuzz"; cp "$BIN" "$RUN_BIN"; trap 'rm -rf "$(dirname "$RUN_BIN")"' EXIT
echo "machine: $(nproc) cores; profile: $PROFILE; commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- host || echo +changes); seed $SEED; $MINUTES min per target; crashes to $CRASH_DIR; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
for t in "${TARGETS[@]}"; do
  "$RUN_BIN" --target "$t" --minutes "$MINUTES" --seed "$SEED" --crash-dir "$CRASH_DIR" --max-memory-gib "${MAX_MEMORY_GIB:-16}" || {
    echo "$t: FAILED (exit $?): see above and $CRASH_DIR; an abort names its case: rerun $BIN with the same --seed and --save-case N" >&2
    status=1
  }
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
