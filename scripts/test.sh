#!/usr/bin/env bash
# The whole test suite. Installs what it needs (idempotent): the wasm32-wasip2 target, and
# Chromium for the report's browser test (host/tests/report_html.rs).
# Builds every plugin from source once, then the host and its tests in one (dev) profile.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
rustup component add rustfmt clippy
# Headless Chromium renders report.html in host/tests/report_html.rs (Debian's package, about
# 30 s to install). ENCORE_CHROMIUM names another Chromium or Chrome binary.
if [ -z "${ENCORE_CHROMIUM:-}" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "scripts/test.sh: host/tests/report_html.rs needs Chromium: install it (Debian: apt-get install chromium)" \
      "or set ENCORE_CHROMIUM to a Chromium binary; this script installs it only as root with apt-get" >&2
    exit 1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
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
