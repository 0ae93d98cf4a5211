# Sourced by run.sh and eval.sh, after their flags are read ($threads, $keep): the RecBole venv
# ($py), thread settings for both sides, a release build ($enc), and the work folder ($work).
venv="${ENCORE_TORCH_VENV:-$HOME/.cache/encore-venv-torch}"
if ! "$venv/bin/python" -c "import torch, recbole" 2>/dev/null; then
  echo "creating $venv (torch, RecBole 1.2.1)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "numpy<2" "pandas<3" torch "recbole==1.2.1" scipy
fi
py="$venv/bin/python"

export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/encore-target-rel}"
cargo plugins -q
cargo build -q --release -p encore
enc="$CARGO_TARGET_DIR/release/encore"

work=${keep:-$(mktemp -d)}
mkdir -p "$work"
if [ -z "$keep" ]; then
  trap 'rm -rf "$work"' EXIT
fi
