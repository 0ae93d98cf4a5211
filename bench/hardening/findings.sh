#!/bin/bash
# Usage: bench/hardening/findings.sh ENCORE_BINARY WORKDIR
# Four findings of issue #14, replayed against a binary: each line gives the exit code and the
# end of the error. Run it against an old build and a new one to see what changed.
set -u
B=$1; W=$2; rm -rf "$W"; mkdir -p "$W"; cd "$W"
export CANDLE_NUM_THREADS=1 ENCORE_PLUGIN_PATH=$HOME/.cache/encore-target/wasm32-wasip2/release
$B data synth --users 60 --tracks 800 --rows 20000 --seed 3 --out syn >/dev/null 2>&1
$B data prepare syn/listens.tsv --out prep --split loo >/dev/null 2>&1
cat > t.toml <<'T'
[data]
prepared = "prep"
[encoder]
kind = "sasrec"
hidden_size = 16
inner_size = 32
max_len = 10
[train]
epochs = 2
batch_size = 64
[eval]
ks = [10]
T
# 1. a flipped bit in train.parquet
cp -a prep prep.bak
python3 - <<'P'
p='prep/train.parquet'; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=0x10; open(p,'wb').write(b)
P
$B train t.toml --out o1 --quiet >/dev/null 2>o1.err; echo "flipped bit in train.parquet -> train exit $? ($(tail -c 160 o1.err | tr '\n' ' '))"
rm -rf prep; cp -a prep.bak prep
# 2. two prepares on the same --out at once
$B data prepare syn/listens.tsv --out prep2 --split loo >/dev/null 2>p1.err & P1=$!
$B data prepare syn/listens.tsv --out prep2 --split temporal >/dev/null 2>p2.err; E2=$?
wait $P1; E1=$?
echo "two prepares on one --out -> exits $E1 and $E2 ($(tail -c 160 p2.err | tr '\n' ' '))"
# 3. an edited checkpoint epoch, then --resume
$B train t.toml --out o3 --quiet >/dev/null 2>&1
sed -i 's/^epoch = 2/epoch = 1/' o3/checkpoints/epoch-0002.toml
$B train t.toml --out o3 --resume --quiet >/dev/null 2>o3.err; echo "edited checkpoint epoch, --resume -> exit $? ($(tail -c 160 o3.err | tr '\n' ' '))"
# 4. --resume on other data with the same item count (another split of the same log)
rm -rf o4; $B train t.toml --out o4 --quiet >/dev/null 2>&1
$B data prepare syn/listens.tsv --out prep --split temporal >/dev/null 2>&1
sed -i 's/^epochs = 2/epochs = 3/' t.toml
$B train t.toml --out o4 --resume --quiet >/dev/null 2>o4.err; echo "--resume on other data -> exit $? ($(tail -c 160 o4.err | tr '\n' ' '))"
