#!/usr/bin/env bash
# Python venv with Hugging Face transformers + PEFT (on PyTorch, CPU) for the reference outputs that
# encore's LLaMA / Qwen2 / LoRA tests compare against (host/tests/python/hf_llm.py). PyPI wheels
# only; idempotent. Prints the venv's python on stdout, logs to stderr:
#
#   py=$(scripts/hf-venv.sh)
#   "$py" host/tests/python/hf_llm.py make --arch llama --out /tmp/tiny-llama
#
# Where: $ENCORE_HF_VENV (default ~/.cache/encore-venv-hf). A fresh install downloads 2.4 GB,
# takes about 2 minutes and leaves 4.3 GB; pip's cache is not used (it would add the 2.4 GB).
#
# Why not simply `pip install torch transformers peft`: PyPI's Linux torch wheel is the CUDA build
# (PyTorch's CPU-only wheels are on its own index, which is not reachable here). Its libraries are
# linked against the CUDA runtime, so `import torch` fails without those .so files even on CPU
# (tried: torch with --no-deps and only its pure-Python deps fails with libcudart.so.13 not found).
# So everything is installed with --no-deps from the exact list below: the full resolution of
# torch==2.15.0 transformers==5.24.0 peft==0.21.2 safetensors==0.8.0, less the wheels that
# nothing loads on CPU: triton (1 GB; only torch.compile uses it), nvidia-cusolver (loaded by
# libtorch_cuda_linalg.so on demand), nvidia-cuda-cccl and -nvtx (headers / optional), cuda-toolkit
# (an empty meta package), cuda-bindings and cuda-pathfinder. The CUDA libraries that stay
# (cuDNN alone is 850 MB) are the ones libtorch_cpu.so / libtorch_cuda.so name as DT_NEEDED, which
# the loader must find although no GPU is used. (The full resolution: a 5.6 GB venv, 2m15s.)
# To change a version: resolve the new set in a scratch venv (pip install ...; pip freeze), then
# drop the same CUDA-only wheels and check that hf_llm.py still runs.
set -euo pipefail

venv="${ENCORE_HF_VENV:-$HOME/.cache/encore-venv-hf}"
py="${PYTHON:-python3}"

wheels=(torch==2.15.0 transformers==5.24.0 peft==0.21.2 safetensors==0.8.0 accelerate==1.15.0
        huggingface_hub==2.4.0 tokenizers==0.23.3 hf-xet==1.8.0 numpy==2.4.6
        # the CUDA 13 libraries that libtorch links against (needed to import torch, even on CPU)
        nvidia-cublas==13.4.1.3 nvidia-cuda-cupti==13.2.86 nvidia-cuda-nvrtc==13.2.86
        nvidia-cuda-runtime==13.2.86 nvidia-cudnn-cu13==9.26.0.51 nvidia-cufft==12.2.0.57
        nvidia-cufile==1.17.1.22 nvidia-cusparse==12.7.10.12 nvidia-cusparselt-cu13==0.8.1
        nvidia-nccl-cu13==2.30.7 nvidia-nvjitlink==13.5.37 nvidia-nvshmem-cu13==3.7.2
        # pure-Python (and small native) dependencies of the above
        filelock==4.3.1 fsspec==2026.9.0 Jinja2==3.1.6 MarkupSafe==3.0.4 mpmath==1.3.0
        networkx==3.6.1 sympy==1.14.0 setuptools==84.2.1 typing_extensions==4.16.0
        packaging==26.4 psutil==7.2.2 PyYAML==6.0.4 regex==2026.11.19 tqdm==4.70.1
        annotated-doc==0.0.7 annotated-types==0.8.0 anyio==4.16.0 click==8.5.1 h11==0.16.0
        httpcore2==2.16.2 httpx2==2.16.2 idna==3.20 markdown-it-py==4.3.0 mdurl==0.1.2
        pydantic==2.14.4 pydantic_core==2.50.5 Pygments==2.21.0 rich==15.0.0 shellingham==1.5.4
        truststore==0.10.5 typer==0.29.2 typing-inspection==0.4.5)

log() { echo "hf-venv: $*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv "$venv"
fi
stamp="$venv/.encore-hf-wheels"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${wheels[*]}" ]; then
  log "installing torch, transformers, peft, safetensors and ${#wheels[@]} pinned wheels in all (2.4 GB to download)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-cache-dir --no-deps "${wheels[@]}" >&2
  # Import check before the stamp, so that a broken install is retried next time.
  "$venv/bin/python" -c 'import torch, transformers, peft, safetensors; torch.ones(2) @ torch.ones(2)' >&2 \
    || { log "the installed venv does not import torch/transformers/peft"; exit 1; }
  echo "${wheels[*]}" > "$stamp"
fi

echo "$venv/bin/python"
