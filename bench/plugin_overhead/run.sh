#!/usr/bin/env bash
# What sandboxed metric plugins cost, against the same metrics in plain Rust, in one run.
# Usage: bench/plugin_overhead/run.sh [--users 100000 --items 20000 --dim 64 --reps 2]
set -euo pipefail
cd "$(dirname "$0")/../.."
rustup target add wasm32-wasip2 >/dev/null
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
cargo plugins -q
cargo build -q --release -p encore --example plugin_overhead
echo "machine: $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -v "$CARGO_TARGET_DIR/release/examples/plugin_overhead" "$@" 2> >(grep -E "Maximum resident|Elapsed" >&2)
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
