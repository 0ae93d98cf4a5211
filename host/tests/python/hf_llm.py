#!/usr/bin/env python3
"""Hugging Face transformers / PEFT reference outputs for encore's own LLaMA and Qwen2 (and LoRA).

Run it with the venv of scripts/hf-venv.sh (torch, transformers, peft, safetensors, pinned there):

  py=$(scripts/hf-venv.sh)
  $py host/tests/python/hf_llm.py make --arch llama|llama3|qwen2 --out DIR [--seed 0] [--shard]
  $py host/tests/python/hf_llm.py peft-make --base DIR --out ADAPTER_DIR [--r 4 --alpha 8 --rslora]
  $py host/tests/python/hf_llm.py peft --base DIR --adapter ADAPTER_DIR --out FILE

make       a tiny random-weight model (hidden 64, 2 layers, 4 heads, 2 key/value heads, intermediate
           96, vocab 128), float32, eager attention, saved with save_pretrained (safetensors; with
           --shard as model.safetensors.index.json + several shards), and DIR/reference.safetensors:
             inputs_embeds  f32 (2, 7, 64)   random normal
             attention_mask f32 (2, 7)       [[0,0,1,1,1,1,1],[1,1,1,1,1,1,1]] (left padding)
             hidden         f32 (2, 7, 64)   base model's last_hidden_state (after the final norm)
                                             for inputs_embeds + attention_mask, no position_ids
                                             (so HF's default positions 0..T-1, padding included)
             logits         f32 (2, 7, 128)  lm_head(hidden)
             input_ids      i64 (1, 5)       some ids
             ids_logits     f32 (1, 5, 128)  plain forward of input_ids (no mask)
           The outputs are computed by the model as reloaded from DIR (what a reader of DIR gets).
           Rows at padded positions (attention_mask 0) are whatever HF's eager attention makes of a
           fully masked query row (every score gets finfo.min added, so softmax is uniform over all
           keys); compare them only if encore means to reproduce that.
           config.json is written in the classic layout of published checkpoints (top-level
           rope_theta, rope_scaling); --config-format v5 keeps transformers 5's rope_parameters.
peft-make  self-test only: a random LoRA adapter (non-zero B) on every projection of DIR, saved
           with PEFT's save_pretrained (adapter_model.safetensors + adapter_config.json, whose
           target_modules list is then sorted: PEFT writes it from a set, in a random order).
peft       DIR + ADAPTER_DIR through PEFT; fails (exit 1) unless every lora_A/lora_B tensor of the
           adapter file was loaded into the model as is (PEFT itself only warns). Writes FILE with
           hidden, logits (for DIR/reference.safetensors' inputs) and ids_logits.

Deterministic (torch.manual_seed), CPU only, 2 threads, no network (HF_HUB_OFFLINE).
"""

import argparse
import json
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

torch.set_num_threads(2)


def quiet():
    from transformers.utils import logging

    logging.disable_progress_bar()


HIDDEN, LAYERS, HEADS, KV_HEADS, INTER, VOCAB = 64, 2, 4, 2, 96, 128
BATCH, SEQ = 2, 7
ATTENTION_MASK = [[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def die(msg):
    print(f"hf_llm: {msg}", file=sys.stderr)
    sys.exit(1)


def versions():
    import peft
    import safetensors
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "safetensors": safetensors.__version__}


def header(meta):
    """safetensors metadata as one JSON string: several keys come out in a random order."""
    return {"hf_llm": json.dumps(meta, sort_keys=True)}


def make_config(arch):
    from transformers import LlamaConfig, Qwen2Config

    common = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                  num_key_value_heads=KV_HEADS, intermediate_size=INTER, vocab_size=VOCAB,
                  max_position_embeddings=256, rms_norm_eps=1e-5, hidden_act="silu",
                  attn_implementation="eager")
    if arch == "llama":
        return LlamaConfig(**common, rope_theta=10000.0, tie_word_embeddings=False)
    if arch == "llama3":
        return LlamaConfig(**common, rope_theta=500000.0, tie_word_embeddings=False,
                           rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    if arch == "qwen2":
        return Qwen2Config(**common, rope_theta=10000.0, tie_word_embeddings=True)
    die(f"unknown --arch {arch}")


def model_class(arch):
    from transformers import LlamaForCausalLM, Qwen2ForCausalLM

    return Qwen2ForCausalLM if arch == "qwen2" else LlamaForCausalLM


def load_model(path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    if model.config._attn_implementation != "eager":
        die(f"{path}: attention implementation is {model.config._attn_implementation}, not eager")
    return model


def classic_config(path):
    """Rewrites DIR/config.json from transformers 5's `rope_parameters` to the layout that published
    LLaMA / Qwen2 checkpoints use: top-level `rope_theta`, and `rope_scaling` unless the type is
    default."""
    file = os.path.join(path, "config.json")
    with open(file) as f:
        cfg = json.load(f)
    rope = cfg.pop("rope_parameters", None)
    if rope is not None:
        rope = dict(rope)
        cfg["rope_theta"] = rope.pop("rope_theta")
        cfg["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    with open(file, "w") as f:
        json.dump(dict(sorted(cfg.items())), f, indent=2)
        f.write("\n")


def base_forward(model, embeds, mask):
    """(hidden after the final norm, logits) of a *ForCausalLM, HF's default position ids."""
    out = model.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
    hidden = out.last_hidden_state
    logits = model.lm_head(hidden)
    full = model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).logits
    if not torch.equal(full, logits):
        die("lm_head(last_hidden_state) differs from the model's own logits")
    return hidden, logits


@torch.no_grad()
def cmd_make(a):
    torch.manual_seed(a.seed)
    config = make_config(a.arch)
    model = model_class(a.arch)(config).to(torch.float32).eval()
    # Larger weights than HF's init (std 0.02, norms 1) so that a mistake shows in the outputs.
    for name, p in model.named_parameters():
        if "norm" in name:
            p.copy_(1.0 + 0.1 * torch.randn_like(p))
        else:
            p.copy_(0.2 * torch.randn_like(p))
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out, max_shard_size="100KB" if a.shard else "50GB")
    if a.config_format == "classic":
        classic_config(a.out)
    files = sorted(os.listdir(a.out))
    if a.shard:
        shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
        if "model.safetensors.index.json" not in files or len(shards) < 2:
            die(f"--shard: expected an index and >= 2 shards in {a.out}, got {files}")
    elif "model.safetensors" not in files:
        die(f"no model.safetensors in {a.out}: {files}")

    embeds = torch.randn(BATCH, SEQ, HIDDEN)
    mask = torch.tensor(ATTENTION_MASK, dtype=torch.float32)
    input_ids = torch.randint(0, VOCAB, (1, 5), dtype=torch.int64)

    # Reference outputs from the model as read back from DIR (so the saved config is what counts).
    loaded = load_model(a.out)
    hidden, logits = base_forward(loaded, embeds, mask.long())
    ids_logits = loaded(input_ids=input_ids, use_cache=False).logits
    mem_hidden, _ = base_forward(model, embeds, mask.long())
    if not torch.equal(hidden, mem_hidden):
        die(f"reloaded model differs from the one saved: max |diff| {(hidden - mem_hidden).abs().max()}")

    tensors = {"inputs_embeds": embeds, "attention_mask": mask, "hidden": hidden, "logits": logits,
               "input_ids": input_ids, "ids_logits": ids_logits}
    meta = {"arch": a.arch, "seed": str(a.seed), **versions()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(a.out, "reference.safetensors"),
              header(meta))
    n = sum(p.numel() for p in model.parameters())
    weight_files = [f for f in files if f.startswith("model") and f.endswith(".safetensors")]
    print(f"{a.arch}: {n} parameters, {len(weight_files)} weight file(s) "
          f"in {a.out}; hidden |max| {hidden.abs().max():.3f}, logits |max| {logits.abs().max():.3f}, "
          f"transformers {meta['transformers']}")


def lora_param_name(file_key, adapter_name):
    """adapter_model.safetensors key -> the PeftModel state_dict key it loads into
    (`...q_proj.lora_A.weight` -> `...q_proj.lora_A.default.weight`)."""
    for part in (".lora_A.", ".lora_B.", ".lora_embedding_A", ".lora_embedding_B", ".lora_magnitude_vector"):
        if part in file_key:
            head, tail = file_key.split(part, 1)
            if part.endswith("."):
                return f"{head}{part}{adapter_name}.{tail}"
            return f"{head}{part}.{adapter_name}{tail}"
    return None


@torch.no_grad()
def cmd_peft(a):
    from peft import PeftModel

    weights = os.path.join(a.adapter, "adapter_model.safetensors")
    if not os.path.isfile(weights):
        die(f"{weights} not found (only safetensors adapters are checked)")
    file = load_file(weights)
    lora_keys = [k for k in file if ".lora_A." in k or ".lora_B." in k]
    if not lora_keys:
        die(f"{weights} holds no lora_A/lora_B tensor: {sorted(file)[:5]}")

    model = load_model(a.base)
    peft_model = PeftModel.from_pretrained(model, a.adapter, is_trainable=False)
    peft_model.eval()
    name = peft_model.active_adapter
    state = peft_model.state_dict()
    for k in sorted(lora_keys):
        target = lora_param_name(k, name)
        if target not in state:
            die(f"adapter key {k} was not loaded: the model has no {target} "
                f"(its LoRA keys look like {next((s for s in state if '.lora_A.' in s), 'none')})")
        if state[target].shape != file[k].shape or not torch.equal(state[target], file[k].to(state[target].dtype)):
            die(f"adapter key {k} was not loaded as is into {target}")
    in_model = {s for s in state if ".lora_A." in s or ".lora_B." in s}
    loaded = {lora_param_name(k, name) for k in lora_keys}
    if in_model - loaded:
        die(f"LoRA weights of the model that the adapter file does not set: {sorted(in_model - loaded)[:4]}")

    ref = load_file(os.path.join(a.base, "reference.safetensors"))
    base = peft_model.get_base_model()
    hidden, logits = base_forward(base, ref["inputs_embeds"], ref["attention_mask"].long())
    via_peft = peft_model(inputs_embeds=ref["inputs_embeds"], attention_mask=ref["attention_mask"].long(),
                          use_cache=False).logits
    if not torch.equal(via_peft, logits):
        die("PeftModel's logits differ from its base model's")
    if torch.equal(logits, ref["logits"]):
        die("the adapter changes nothing: logits equal the base model's")
    ids_logits = base(input_ids=ref["input_ids"], use_cache=False).logits
    meta = {"base": a.base, "adapter": a.adapter, **versions()}
    out = {"hidden": hidden, "logits": logits, "ids_logits": ids_logits}
    save_file({k: v.contiguous() for k, v in out.items()}, a.out, header(meta))
    print(f"peft: {len(lora_keys)} LoRA tensors loaded and checked; max |logits - base logits| "
          f"{(logits - ref['logits']).abs().max():.3f}; wrote {a.out}")


@torch.no_grad()
def cmd_peft_make(a):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(a.seed)
    model = load_model(a.base)
    config = LoraConfig(r=a.r, lora_alpha=a.alpha, target_modules=LORA_TARGETS, lora_dropout=0.0, bias="none",
                        use_rslora=a.rslora, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    for n, p in peft_model.named_parameters():
        if ".lora_A." in n or ".lora_B." in n:
            p.copy_(0.2 * torch.randn_like(p))  # B non-zero, so the adapter matters
    peft_model.save_pretrained(a.out)
    # PEFT writes target_modules from a set (random order per run); sorted, the file is reproducible.
    cfg_file = os.path.join(a.out, "adapter_config.json")
    with open(cfg_file) as f:
        cfg = json.load(f)
    cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(cfg_file, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    saved = load_file(os.path.join(a.out, "adapter_model.safetensors"))
    print(f"peft-make: {len(saved)} tensors in {a.out}/adapter_model.safetensors")
    for k in sorted(saved):
        print(f"  {k} {tuple(saved[k].shape)} {saved[k].dtype}")
    with open(os.path.join(a.out, "adapter_config.json")) as f:
        print(f"{a.out}/adapter_config.json:\n{f.read()}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="tiny random model + reference.safetensors")
    m.add_argument("--arch", required=True, choices=["llama", "llama3", "qwen2"])
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--shard", action="store_true", help="several shards + model.safetensors.index.json")
    m.add_argument("--config-format", choices=["classic", "v5"], default="classic")
    m.set_defaults(fn=cmd_make)
    q = sub.add_parser("peft", help="reference outputs of base + LoRA adapter")
    q.add_argument("--base", required=True)
    q.add_argument("--adapter", required=True)
    q.add_argument("--out", required=True)
    q.set_defaults(fn=cmd_peft)
    r = sub.add_parser("peft-make", help="random LoRA adapter, for self-testing `peft`")
    r.add_argument("--base", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--r", type=int, default=4)
    r.add_argument("--alpha", type=float, default=8.0)
    r.add_argument("--rslora", action="store_true")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(fn=cmd_peft_make)
    a = p.parse_args()
    quiet()
    a.fn(a)


if __name__ == "__main__":
    main()
