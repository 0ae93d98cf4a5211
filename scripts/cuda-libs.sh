# Sourced by the device checks (cuda-device-check.sh, cuda-llm-check.sh) on the GPU machine: finds
# the CUDA libraries an encore cuda build needs in whatever that machine has (PyTorch's CUDA 13
# wheels or a toolkit), prints where each was found, and prepends their folders to
# LD_LIBRARY_PATH.
libdirs=""
for l in libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  p=$(find /opt /usr/local /usr/lib -name "$l" 2>/dev/null | grep -v stubs | head -1)
  echo "$l -> ${p:-MISSING}"
  [ -n "$p" ] && libdirs="$libdirs:$(dirname "$p")"
done
export LD_LIBRARY_PATH="$(echo "${libdirs#:}" | tr ':' '\n' | awk '!s[$0]++' | paste -sd:)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
