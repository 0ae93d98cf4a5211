#!/usr/bin/env bash
# encore vs RecBole 1.2.1 (PyTorch, CPU) on the same data, in one run: SASRec, GRU4Rec, BERT4Rec.
#
# 1. Training set: `encore data synth` → `encore data prepare --split loo` → `encore data export
#    recbole`. Both sides train E epochs (dim 64, 2 layers, max length 50, CE loss, lr 1e-3,
#    RecBole's defaults for dropout, mask ratio, GRU sizes), validate Recall@10 after every epoch
#    (full ranking, no history masking, as RecBole does for sequential models) and test the best
#    epoch. RecBole's split is checked to equal encore's (recbole_run.py --check-split).
# 2. Eval set: many users with short histories; both sides evaluate untrained weights by full
#    ranking over all items on the test users (encore through its metric plugins).
#
# Prints per encoder: epoch-time ratio (encore/RecBole), encore's time to reach RecBole's final
# validation Recall@10 as a fraction of RecBole's training wall time, the eval-time ratio, peak
# RSS of each, and the metrics side by side; and the load average before and after.
#
#   bench/encoders/run.sh [--users 300] [--tracks 3000] [--rows 60000] [--epochs 5]
#                         [--eval-users 20000] [--eval-tracks 20000] [--models "sasrec gru4rec bert4rec"]
#                         [--seed 2020] [--threads 2] [--batch 2048] [--keep DIR] [--encore-epochs E]
# --encore-epochs lets encore train longer than RecBole's --epochs, to find when it reaches
# RecBole's final validation Recall@10 (the epoch-time ratio still compares mean epochs).
# --batch is encore's batch_size, in targets as RecBole's train_batch_size counts them (recbole_run.py: 2048).
# Reference size of the issue: --users 1000 --tracks 20000 --rows 220000 (≈197k RecBole samples).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
encore_epochs=""
users=300 tracks=3000 rows=60000 epochs=5 eval_users=20000 eval_tracks=20000 seed=2020 threads=2 batch=2048 keep=""
models="sasrec gru4rec bert4rec"
while [ $# -gt 0 ]; do
  case "$1" in
    --users) users=$2; shift 2 ;;
    --tracks) tracks=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --eval-users) eval_users=$2; shift 2 ;;
    --eval-tracks) eval_tracks=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --encore-epochs) encore_epochs=$2; shift 2 ;;
    *) echo "unknown flag $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

. bench/encoders/setup.sh
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# Training data.
"$enc" data synth --users "$users" --tracks "$tracks" --rows "$rows" --seed 42 --out "$work/synth" >/dev/null
"$enc" data prepare "$work/synth/listens.tsv" --split loo --out "$work/prep" >/dev/null
"$enc" data export recbole "$work/prep" --out "$work/rb" >/dev/null
# Eval data: short histories (≈20 plays per user), every track drawn at least once in expectation.
"$enc" data synth --users "$eval_users" --tracks "$eval_tracks" --rows $((eval_users * 22)) --seed 43 --out "$work/esynth" >/dev/null
"$enc" data prepare "$work/esynth/listens.tsv" --split loo --out "$work/eprep" >/dev/null
"$enc" data export recbole "$work/eprep" --out "$work/erb" >/dev/null

encore_cfg() { # kind epochs data-dir
  cat <<EOF
[data]
prepared = "$3"

[encoder]
kind = "$1"

[train]
epochs = $2
batch_size = $batch
seed = $seed
valid_metric = "recall@10"
patience = 1000

[eval]
ks = [10]
mask_history = false
EOF
}

rss() { grep "Maximum resident" "$1" | awk '{printf "%.0f", $NF / 1024}'; }

declare -A name=([sasrec]=SASRec [gru4rec]=GRU4Rec [bert4rec]=BERT4Rec)
for m in $models; do
  M=${name[$m]}
  echo "== $M: training $epochs epochs on each side" >&2
  encore_cfg "$m" "${encore_epochs:-$epochs}" "$work/prep" > "$work/$m.toml"
  /usr/bin/time -v "$enc" train "$work/$m.toml" --out "$work/enc-$m" --quiet 2> "$work/enc-$m.time" > "$work/enc-$m.out"
  /usr/bin/time -v "$py" bench/encoders/recbole_run.py --data "$work/rb" --model "$M" --epochs "$epochs" --seed "$seed" \
    --threads "$threads" --check-split "$work/rb" > "$work/rb-$m.json" 2> "$work/rb-$m.log"
  echo "== $M: full-ranking eval of $eval_users users on each side" >&2
  encore_cfg "$m" 0 "$work/eprep" > "$work/e-$m.toml"
  /usr/bin/time -v "$enc" train "$work/e-$m.toml" --out "$work/eenc-$m" --quiet 2> "$work/eenc-$m.time" > /dev/null
  "$py" bench/encoders/recbole_run.py --data "$work/erb" --model "$M" --eval-only --threads "$threads" > "$work/erb-$m.json" 2> "$work/erb-$m.log"
  echo "$(rss "$work/enc-$m.time") $(rss "$work/eenc-$m.time")" > "$work/enc-$m.rss"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

"$py" bench/encoders/report.py --work "$work" --models "$models" --threads "$threads" --epochs "$epochs" \
  --load-before "$load_before" --load-after "$load_after"
