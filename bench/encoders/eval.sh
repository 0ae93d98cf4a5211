#!/usr/bin/env bash
# Full-ranking evaluation only, encore against RecBole 1.2.1, in one run: the goal "full-ranking
# eval over ≥ 20k users is ≥ 2× faster". Both sides rank every item for every test user of the
# same data (untrained weights, no history masking, Recall/NDCG@10); each side's time is its test
# evaluation alone (encore: `timings.toml` test_eval_seconds; RecBole: around `trainer.evaluate`),
# without loading. The sides alternate, REPS times each, and the best time of each is reported with
# the load average and both sides' CPU time.
#
#   bench/encoders/eval.sh [--users 20000] [--tracks 20000] [--models "gru4rec sasrec bert4rec"]
#                          [--reps 2] [--threads 2] [--keep DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
users=20000 tracks=20000 models="gru4rec sasrec bert4rec" reps=2 threads=2 keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --users) users=$2; shift 2 ;;
    --tracks) tracks=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "unknown flag $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
. bench/encoders/setup.sh
if [ ! -f "$work/rb/encore.inter" ]; then
  # Short histories (≈ 20 plays per user); every track drawn at least once in expectation.
  "$enc" data synth --users "$users" --tracks "$tracks" --rows $((users * 22)) --seed 43 --out "$work/synth" >/dev/null
  "$enc" data prepare "$work/synth/listens.tsv" --split loo --out "$work/prep" >/dev/null
  "$enc" data export recbole "$work/prep" --out "$work/rb" >/dev/null
fi
declare -A name=([sasrec]=SASRec [gru4rec]=GRU4Rec [bert4rec]=BERT4Rec)
cpu() { awk '/User time/{u=$NF} /System time/{s=$NF} END{printf "%.2f", u+s}' "$1"; }
echo "full-ranking test evaluation, untrained weights, $threads threads per side; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-9s %8s %12s %12s %8s %16s %16s %s\n" model users "encore s" "RecBole s" ratio "CPU s enc/RB" "R@10 enc/RB" "load"
for m in $models; do
  printf '[data]\nprepared = "%s"\n\n[encoder]\nkind = "%s"\n\n[train]\nepochs = 0\nseed = 2020\n\n[eval]\nks = [10]\nmask_history = false\n' "$work/prep" "$m" > "$work/$m.toml"
  best_e=999999 best_r=999999
  for rep in $(seq "$reps"); do
    /usr/bin/time -v "$enc" train "$work/$m.toml" --out "$work/enc-$m" --quiet > /dev/null 2> "$work/enc-$m.time"
    e=$(awk -F' = ' '/^test_eval_seconds/{print $2}' "$work/enc-$m/timings.toml")
    /usr/bin/time -v "$py" bench/encoders/recbole_run.py --data "$work/rb" --model "${name[$m]}" --eval-only --threads "$threads" > "$work/rb-$m.json" 2> "$work/rb-$m.time"
    r=$("$py" -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])['test_eval_seconds'])" "$work/rb-$m.json")
    best_e=$(awk -v a="$e" -v b="$best_e" 'BEGIN{print (a < b) ? a : b}')
    best_r=$(awk -v a="$r" -v b="$best_r" 'BEGIN{print (a < b) ? a : b}')
  done
  n=$(awk -F' = ' '/^test_users/{print $2}' "$work/enc-$m/timings.toml")
  er=$(awk -F' = ' '/"recall@10"/{printf "%.4f", $2}' "$work/enc-$m/summary.toml")
  rr=$("$py" -c "import json,sys; print('%.4f' % json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])['test']['recall@10'])" "$work/rb-$m.json")
  printf "%-9s %8s %12.2f %12.2f %8.3f %16s %16s %s\n" "${name[$m]}" "$n" "$best_e" "$best_r" "$(awk -v a="$best_e" -v b="$best_r" 'BEGIN{print a / b}')" \
    "$(cpu "$work/enc-$m.time")/$(cpu "$work/rb-$m.time")" "$er/$rr" "$(cut -d' ' -f1 /proc/loadavg)"
done
echo "CPU s: the last rep's whole process (encore: load + evaluation + export; RecBole: load + evaluation)"
