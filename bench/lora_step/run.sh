#!/usr/bin/env bash
# E4SRec LoRA training step and evaluation batch (seconds): encore's host LLM (candle,
# host/examples/lora_step.rs) against PyTorch + PEFT (bench/lora_step/torch_step.py, as
# HestiaSky/E4SRec's model.py computes it, sdpa attention, fp32, no gradient checkpointing) on the
# same random-weight model with SmolLM2-135M-Instruct's config, the same prompt token counts, items
# and batch, in one run, both on 2 threads. Sides run in separate processes, alternating (encore,
# torch, torch-prefix, encore, ...), REPEATS times; prints each run, a table (step_s, eval_batch_s,
# eval rows/s, peak RSS, tokens through the decoder per step / per evaluation batch, load average)
# and the ratios encore / torch (time: < 1 means encore is faster), from each side's best run.
#   torch         every row runs instruction + items + response (what E4SRec does): the anchor.
#   torch-prefix  the instruction's past_key_values are computed once and broadcast to the rows
#                 (what encore does); checks that its user vectors equal torch's full sequence's.
# Usage: bench/lora_step/run.sh
# Env: BATCH=8 ITEMS=10 STEPS=5 EVAL_BATCH=64 PROMPT_TOKENS=49,6 (instruction,response ids);
# REPEATS=2; PREFIX=1 (0 skips torch-prefix); PROFILE=dev (default; reuses the test build in
# $CARGO_TARGET_DIR, default ~/.cache/encore-target) or release (its own target dir,
# $RELEASE_TARGET_DIR, default ~/.cache/encore-target-rel, so it never waits on the test build's
# lock); LORA_STEP_MODEL (default ~/.cache/encore-bench/smollm2-config-random, made if missing,
# 540 MB). The torch venv is scripts/hf-venv.sh's (made if missing, 2.4 GB download).
# Takes about 10 minutes with the defaults on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
BATCH="${BATCH:-8}"; ITEMS="${ITEMS:-10}"; STEPS="${STEPS:-5}"; EVAL_BATCH="${EVAL_BATCH:-64}"
PROMPT_TOKENS="${PROMPT_TOKENS:-49,6}"; REPEATS="${REPEATS:-2}"; PREFIX="${PREFIX:-1}"
PROFILE="${PROFILE:-dev}"
MODEL="${LORA_STEP_MODEL:-$HOME/.cache/encore-bench/smollm2-config-random}"
PY="$(bash scripts/hf-venv.sh)"
"$PY" bench/lora_step/torch_step.py make --out "$MODEL"
if [ "$PROFILE" = release ]; then
  export CARGO_TARGET_DIR="${RELEASE_TARGET_DIR:-$HOME/.cache/encore-target-rel}"
  cargo build -q --release -p encore --example lora_step
  BIN="$CARGO_TARGET_DIR/release/examples/lora_step"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
  cargo build -q -p encore --example lora_step
  BIN="$CARGO_TARGET_DIR/debug/examples/lora_step"
fi
export PROMPT_TOKENS CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 \
  OMP_WAIT_POLICY=PASSIVE
OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT
SIDES="encore torch"; [ "$PREFIX" = 1 ] && SIDES="$SIDES torch-prefix"
echo "machine: $(nproc) cores; profile: $PROFILE; model: $MODEL"
echo "batch $BATCH, items $ITEMS, prompt tokens $PROMPT_TOKENS, steps $STEPS (+1 warm-up), eval batch $EVAL_BATCH"
echo "uptime before: $(uptime)"
for rep in $(seq 1 "$REPEATS"); do
  for side in $SIDES; do
    f="$OUT/$side.$rep"
    echo "load $(cut -d' ' -f1-3 /proc/loadavg)" > "$f"
    case "$side" in
      encore) "$BIN" "$MODEL" "$BATCH" "$ITEMS" "$STEPS" "$EVAL_BATCH" >> "$f" ;;
      torch*) "$PY" bench/lora_step/torch_step.py run "$MODEL" --batch "$BATCH" --items "$ITEMS" --steps "$STEPS" \
                --eval-batch "$EVAL_BATCH" --prompt "$PROMPT_TOKENS" --variant "$([ "$side" = torch ] && echo full || echo prefix)" >> "$f" ;;
    esac
    echo "--- $side, run $rep"; cat "$f"
  done
done
echo "uptime after: $(uptime)"
python3 - "$OUT" "$REPEATS" "$EVAL_BATCH" $SIDES <<'PY'
import sys
out, reps, eval_batch, sides = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def parse(path):
    kv = {}
    for line in open(path):
        k, _, v = line.strip().partition(" ")
        kv[k] = v
    return kv
runs = {s: [parse(f"{out}/{s}.{r}") for r in range(1, reps + 1)] for s in sides}
def tokens(s, kv):
    if s != "encore":
        return kv["step_tokens"], kv["eval_tokens"].split()[0]
    f = kv["prompt_tokens"].split()  # P response_tokens R items I batch B
    p, r, i, b = int(f[0]), int(f[2]), int(f[4]), int(f[6])
    return str(p + b * (i + r)), str(eval_batch * (i + r))
print(f"{'side':<13} {'run':>3} {'step_s':>8} {'eval_batch_s':>12} {'eval rows/s':>11} {'peak RSS MiB':>12} "
      f"{'tokens/step':>11} {'tokens/eval':>11}  load (1, 5, 15 min)")
for s in sides:
    for r, kv in enumerate(runs[s], 1):
        st, et = tokens(s, kv)
        e = float(kv["eval_batch_s"])
        print(f"{s:<13} {r:>3} {float(kv['step_s']):>8.3f} {e:>12.3f} {eval_batch / e:>11.1f} "
              f"{float(kv['peak_rss_mib']):>12.0f} {st:>11} {et:>11}  {kv['load']}")
best = {s: {k: min(float(kv[k]) for kv in runs[s]) for k in ("step_s", "eval_batch_s", "peak_rss_mib")} for s in sides}
for t in [s for s in sides if s != "encore"]:
    e, o = best["encore"], best[t]
    print(f"encore / {t} (best runs): step {e['step_s'] / o['step_s']:.2f}, eval batch "
          f"{e['eval_batch_s'] / o['eval_batch_s']:.2f}, peak RSS {e['peak_rss_mib'] / o['peak_rss_mib']:.2f}")
PY
