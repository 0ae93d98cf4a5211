#!/usr/bin/env bash
# Build-time CUDA toolkit for `cargo build -p encore --features cuda`, from PyPI wheels only
# (no apt, no NVIDIA installer, no GPU needed on the build machine). Idempotent.
#
#   scripts/cuda-toolchain.sh            # install (once) and print the environment to use
#   eval "$(scripts/cuda-toolchain.sh)"  # install and export it into this shell
#   cargo build --release -p encore --features cuda
#
# What it makes, under $ENCORE_CUDA_HOME (default ~/.cache/encore-cuda):
#   venv/                      a Python venv holding NVIDIA's CUDA 13.0 wheels (nvcc, runtime, nvrtc,
#                              cuBLAS, cuRAND, crt, cccl, nvvm); they unpack into
#                              venv/lib/python3.*/site-packages/nvidia/cu13 = the CUDA root below
#   <root>/lib/lib*.so         unversioned links (libcublas.so -> libcublas.so.13, ...) that the
#                              linker needs; the wheels ship only the versioned sonames
#   <root>/lib/stubs/libcuda.so  a stub of the driver library (soname libcuda.so.1) exporting every
#                              cu* function cudarc declares. It exists only so the binary links;
#                              at run time the real driver's libcuda.so.1 is loaded instead.
#                              NEVER put lib/stubs on LD_LIBRARY_PATH when running.
#
# Why CUDA 13.0 exactly: candle-kernels compiles its kernels to PTX, which the driver JIT-compiles
# when they are loaded; a driver only accepts PTX from a toolkit no newer than itself (driver 580 =
# CUDA 13.0). For an older (CUDA 12) driver this script does not apply as is: NVIDIA's -cu12
# wheels (nvidia-cuda-nvcc-cu12, ...) unpack per component and were not tried here.
#
# Run time, on the GPU machine: the binary needs libcuda.so.1 (driver), libcublas.so.13,
# libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13, libcudart.so.13 on the loader path, e.g.
# the same wheels (pip install nvidia-cublas nvidia-curand nvidia-cuda-nvrtc nvidia-cuda-runtime)
# or PyTorch's CUDA 13 build, which carries them under site-packages/nvidia/cu13/lib.
set -euo pipefail

home="${ENCORE_CUDA_HOME:-$HOME/.cache/encore-cuda}"
cap="${CUDA_COMPUTE_CAP:-90}"   # 90 = Hopper (H100/H200); 80 = A100, 89 = L4/4090, 86 = A10/3090
py="${PYTHON:-python3}"

wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88
        nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88
        nvidia-curand==10.4.0.35 nvidia-cublas==13.0.2.14)

log() { echo "cuda-toolchain: $*" >&2; }

if [ ! -x "$home/venv/bin/python" ]; then
  log "creating $home/venv"
  mkdir -p "$home"
  "$py" -m venv "$home/venv"
fi
stamp="$home/venv/.encore-wheels"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${wheels[*]}" ]; then
  log "installing ${wheels[*]} (about 1.2 GB)"
  "$home/venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "${wheels[@]}" >&2
  echo "${wheels[*]}" > "$stamp"
fi

root=$(echo "$home"/venv/lib/python3*/site-packages/nvidia/cu13)
[ -x "$root/bin/nvcc" ] || { log "no nvcc under $root: the wheel install failed"; exit 1; }

# Unversioned names for the linker (-lcublas etc.).
for so in "$root"/lib/lib*.so.*; do
  base=$(basename "$so"); name=${base%%.so.*}
  case "$base" in *.alt.*|*builtins*) continue ;; esac
  [ -e "$root/lib/$name.so" ] || ln -s "$base" "$root/lib/$name.so"
done

# Driver stub: every cu* symbol that cudarc's driver bindings declare, as empty functions.
stubs="$root/lib/stubs"
if [ ! -f "$stubs/libcuda.so" ]; then
  cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$cudarc" ]; then
    log "cudarc sources not found in the cargo registry; running cargo fetch"
    (cd "$(dirname "$0")/.." && cargo fetch -q)
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | sort -V | tail -1)
  fi
  mkdir -p "$stubs"
  grep -ohE '^ +fn cu[A-Za-z0-9_]+\(' "$cudarc/src/driver/sys/mod.rs" \
    | sed -E 's/^ +fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u \
    | awk '{ printf "int %s(void) { return 999; /* CUDA_ERROR_UNKNOWN: stub, never the real driver */ }\n", $1 }' \
    > "$stubs/libcuda-stub.c"
  cc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/libcuda-stub.c"
  log "driver stub: $(grep -c '^int' "$stubs/libcuda-stub.c") symbols -> $stubs/libcuda.so"
fi

cat <<ENV
export CUDA_ROOT="$root"
export CUDA_HOME="$root"
export CUDA_PATH="$root"
export NVCC="$root/bin/nvcc"
export PATH="$root/bin:\$PATH"
export CUDA_COMPUTE_CAP=$cap
ENV
# No RUSTFLAGS needed (changing them would rebuild every dependency): cudarc's build script adds
# -L for \$CUDA_ROOT/lib and \$CUDA_ROOT/lib/stubs itself, and the wheels' libraries find each
# other through their \$ORIGIN runpath.
