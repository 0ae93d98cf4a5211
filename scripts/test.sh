#!/usr/bin/env bash
# The whole test suite. Installs what it needs: the wasm32-wasip2 target (idempotent).
# Builds every plugin from source once, then the host and its tests in one (dev) profile.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
rustup component add rustfmt clippy
# A fixed target directory outside the clone makes later runs on the same machine incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target}"
# Tests call the library in-process: keep candle's spinning elementwise pool to one thread, as
# the encore binary does (host/src/main.rs); matrix products still use rayon.
export CANDLE_NUM_THREADS="${CANDLE_NUM_THREADS:-1}"
# Habits: formatted code, and no clippy warning in the host and the SDK.
cargo fmt --all --check
cargo clippy -q -p encore -p encore-sdk --all-targets -- -D warnings
cargo plugins
cargo test -p encore -p encore-sdk
