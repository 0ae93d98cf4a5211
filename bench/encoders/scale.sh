#!/usr/bin/env bash
# Scale check: SASRec (dim 64, 2 layers, max length 50) over the paper's catalog size, 384,000
# items: one epoch on 800 synthetic sequences (batch 32), then full-ranking validation and test
# over all 384k items. Prints wall time and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo plugins -q
cargo build -q --release -p encore
work=$(mktemp -d)
python3 - "$work/seqs.txt" <<'PY'
import random, sys
random.seed(1)
n = 384000
with open(sys.argv[1], "w") as f:
    for u in range(800):
        start, length = random.randrange(n), random.randint(10, 30)
        f.write(" ".join(str((start + i * 7 + random.randrange(3)) % n) for i in range(length)) + "\n")
PY
cat > "$work/scale.toml" <<'TOML'
[data]
sequences = "seqs.txt"
n_items = 384000

[encoder]
kind = "sasrec"
hidden_size = 64
n_layers = 2
n_heads = 2
max_len = 50

[train]
epochs = 1
batch_size = 32
batch_unit = "windows"

[eval]
ks = [10]
batch_users = 256
TOML
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -v "$CARGO_TARGET_DIR/release/encore" train "$work/scale.toml" --out "$work/run" --quiet 2> >(grep -E "Maximum resident|Elapsed|items" >&2)
rm -rf "$work"
