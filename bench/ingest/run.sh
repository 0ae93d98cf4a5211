#!/usr/bin/env bash
# bench/ingest: encore ingest + sessionize + filters (the paper preset) against polars with the
# same rules, on 2M- and 4M-row synthetic LastFM-1K TSVs, in one run. Each side runs --reps times,
# alternating, and the median wall time of each is compared (the machines are shared and noisy);
# peak RSS (from /usr/bin/time -v) is the largest of the reps.
# Usage: bench/ingest/run.sh [--reps N] [ROWS...] (default: --reps 3, rows 2000000 4000000).
# Needs: a release build (built here if missing), python3 (a venv with polars is made idempotently).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
BIN="${ENCORE_BIN:-$CARGO_TARGET_DIR/release/encore}"
[ -x "$BIN" ] || cargo build --release -p encore
VENV="${ENCORE_VENV:-$HOME/.cache/encore-venv}"
if ! "$VENV/bin/python" -c "import polars" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q polars
fi
WORK="${BENCH_DIR:-$(mktemp -d)}"
reps=3
if [ "${1:-}" = --reps ]; then reps=$2; shift 2; fi
ROWS=("${@:-2000000 4000000}")
read -r -a ROWS <<< "${ROWS[*]}"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; polars $("$VENV/bin/python" -c 'import polars; print(polars.__version__)'); work dir $WORK"
measure() { # label, command... → "seconds rss_mib"
  local log="$WORK/time.$1.log"; shift
  /usr/bin/time -v "$@" > "$log.out" 2> "$log"
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/{n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/{printf "%.0f", $2/1024}' "$log")
  echo "$wall $rss"
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
maxof() { tr ' ' '\n' | grep . | sort -g | tail -1; }
echo "each side $reps times, alternating; median wall time, largest peak RSS"
printf "%-10s %-9s %10s %10s %12s %12s %8s %s\n" rows tsv_MiB encore_s polars_s encore_MiB polars_MiB ratio load
for n in "${ROWS[@]}"; do
  users=$((n / 2800)); tracks=$((n / 10))
  d="$WORK/synth-$n"
  [ -f "$d/listens.tsv" ] || "$BIN" data synth --users "$users" --tracks "$tracks" --rows "$n" --seed 7 --out "$d" 2>/dev/null
  # The item table encore reads for completion ratios: track → seconds (outside the timing).
  [ -f "$d/durations.tsv" ] || cut -f1,8 "$d/tracks.tsv" > "$d/durations.tsv"
  size=$(( $(stat -c %s "$d/listens.tsv") / 1048576 ))
  sync
  ew=""; er=""; pw=""; pr=""
  for rep in $(seq "$reps"); do
    read -r s r < <(measure "encore-$n" "$BIN" data prepare "$d/listens.tsv" --config "$ROOT/configs/data/paper.toml" --durations "$d/durations.tsv" --out "$WORK/out-encore-$n")
    ew="$ew $s"; er="$er $r"
    read -r s r < <(measure "polars-$n" "$VENV/bin/python" "$ROOT/bench/ingest/polars_prepare.py" "$d/listens.tsv" "$WORK/out-polars-$n.parquet")
    pw="$pw $s"; pr="$pr $r"
  done
  es=$(echo "$ew" | median); ps=$(echo "$pw" | median)
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  ratio=$(awk -v a="$es" -v b="$ps" 'BEGIN{printf "%.3f", a/b}')
  printf "%-10s %-9s %10s %10s %12s %12s %8s %s\n" "$n" "$size" "$es" "$ps" "$(echo "$er" | maxof)" "$(echo "$pr" | maxof)" "$ratio" "$load"
  echo "  encore s:$ew; polars s:$pw"
  grep -h "users >= min_user_sessions" "$WORK/time.encore-$n.log.out" "$WORK/time.encore-$n.log" 2>/dev/null | tail -1 | sed 's/^/  encore: /'
  tail -1 "$WORK/time.polars-$n.log.out" | sed 's/^/  /'
done
