#!/usr/bin/env python3
"""The PyTorch + PEFT side of bench/lora_step/run.sh: one E4SRec LoRA training step and one
evaluation batch, timed, as HestiaSky/E4SRec's model.py computes them (fp32 on CPU, no 8-bit,
no gradient checkpointing). Run it with the venv of scripts/hf-venv.sh:

  py=$(scripts/hf-venv.sh)
  $py bench/lora_step/torch_step.py make --out DIR
  $py bench/lora_step/torch_step.py run DIR [--batch 8 --items 10 --steps 5 --eval-batch 64]
      [--prompt 49,6] [--variant full|prefix]

make  a random-weight LlamaForCausalLM with SmolLM2-135M-Instruct's config (hidden 576, 30
      layers, 9 heads, 3 kv heads, intermediate 1536, vocab 49152, tied embeddings, float32),
      saved with save_pretrained (no tokenizer), config.json in the classic rope_theta layout.
      Reuses DIR when it holds config.json and model.safetensors.
run   LlamaModel (AutoModel, attn_implementation="sdpa") + PEFT LoRA r=8 alpha=16 dropout 0.05 on
      q,k,v,o,gate,up,down; item_proj Linear(64 -> hidden); score Linear(hidden -> 2000, no bias);
      a frozen item table randn(2000, 64). One step: inputs_embeds = cat(embed(instruction P ids)
      expanded to B, item_proj(items[ids]) (B x I), embed(response R ids)) -> model(inputs_embeds,
      attention_mask=ones) -> last_hidden_state[:, -1] -> score -> cross_entropy -> backward ->
      AdamW (lr 1e-4) over the trainable parameters. Median of STEPS steps after one warm-up.
      Evaluation: torch.no_grad(), model.eval(), EVAL_BATCH rows the same way -> scores; median of 3.
      --variant full    every row runs the whole sequence P + I + R (what E4SRec does).
      --variant prefix  the instruction runs once (1 x P, with gradients in training) and its
                        past_key_values are broadcast to the B rows, which run I + R tokens (what
                        encore does); for evaluation the prefix is computed once, outside the timing.
      Prints `key value` lines like host/examples/lora_step.rs, plus the tokens that went through
      the first decoder layer in one step / one evaluation batch (counted by a forward hook); the
      prefix variant also checks (untimed) that its user vectors equal the full sequence's.

The prompt ids and item histories are the ones lora_step.rs uses. CPU only, 2 threads unless
torch.set_num_threads is changed, no network (HF_HUB_OFFLINE).
"""

import argparse
import json
import os
import resource
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
warnings.filterwarnings("ignore", category=FutureWarning)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# The config.json rewrite the test models get (transformers 5's rope_parameters back to the
# classic top-level rope_theta / rope_scaling layout), from the test script itself.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "host", "tests", "python"))
from hf_llm import classic_config  # noqa: E402

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))

N_ITEMS, ITEM_DIM = 2000, 64
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# HuggingFaceTB/SmolLM2-135M-Instruct's config.json, less the tokenizer-related ids.
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, rope_theta=100000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, max_position_embeddings=8192, hidden_act="silu",
                    attention_bias=False, mlp_bias=False, initializer_range=0.041666666666666664,
                    bos_token_id=1, eos_token_id=2, pad_token_id=2)


def die(msg):
    print(f"torch_step: {msg}", file=sys.stderr)
    sys.exit(1)


@torch.no_grad()
def cmd_make(a):
    if all(os.path.isfile(os.path.join(a.out, f)) for f in ("config.json", "model.safetensors")):
        print(f"model: reusing {a.out}", file=sys.stderr)
        return
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M)).to(torch.float32).eval()
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out)
    classic_config(a.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {n} parameters (random) in {a.out}", file=sys.stderr)


def ids(n, off):
    """lora_step.rs's fixed prompt token ids."""
    return [(off + i * 13) % 1000 + 100 for i in range(n)]


def histories(rows, items, mul_b, mul_i):
    return torch.tensor([[(b * mul_b + i * mul_i) % N_ITEMS for i in range(items)] for b in range(rows)])


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median(v):
    return sorted(v)[len(v) // 2]


def cmd_run(a):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, DynamicCache

    t0 = time.perf_counter()
    torch.manual_seed(0)
    base = AutoModel.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    if base.config._attn_implementation != "sdpa":
        die(f"attention implementation is {base.config._attn_implementation}, not sdpa")
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=LORA_TARGETS,
                                            bias="none"))
    hidden = base.config.hidden_size
    item_table = torch.nn.Embedding.from_pretrained(torch.randn(N_ITEMS, ITEM_DIM), freeze=True)
    item_proj = torch.nn.Linear(ITEM_DIM, hidden)
    score = torch.nn.Linear(hidden, N_ITEMS, bias=False)
    p_len, r_len = (int(x) for x in a.prompt.split(","))
    embed = base.get_input_embeddings()
    instruct_ids = torch.tensor([ids(p_len, 0)])
    response_ids = torch.tensor([ids(r_len, 500)])
    print(f"load_s {time.perf_counter() - t0:.3f}")
    print(f"prompt_tokens {p_len} response_tokens {r_len} items {a.items} batch {a.batch} variant {a.variant}")

    trainable = [p for p in model.parameters() if p.requires_grad] + list(item_proj.parameters()) + list(score.parameters())
    print(f"trainable_params {sum(p.numel() for p in trainable)} (lora {sum(p.numel() for p in model.parameters() if p.requires_grad)})")
    opt = torch.optim.AdamW(trainable, lr=1e-4)

    tokens = [0]  # tokens through the first decoder layer (hidden states entering it)
    base.layers[0].register_forward_pre_hook(lambda _m, args, kw: tokens.__setitem__(
        0, tokens[0] + (args[0] if args else kw["hidden_states"]).shape[:2].numel()), with_kwargs=True)

    def prefix_cache(rows, pkv=None):
        """The instruction's keys/values, computed once (pkv None) and broadcast to `rows` rows."""
        if pkv is None:
            out = model(inputs_embeds=embed(instruct_ids), attention_mask=torch.ones(1, p_len, dtype=torch.long),
                        use_cache=True)
            pkv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        return DynamicCache(ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in pkv],
                            config=base.config)

    def user_vectors(hist, pkv=None, variant=a.variant):
        rows = hist.shape[0]
        items = item_proj(item_table(hist))
        resp = embed(response_ids).expand(rows, -1, -1)
        if variant == "full":
            x = torch.cat([embed(instruct_ids).expand(rows, -1, -1), items, resp], dim=1)
            out = model(inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long), use_cache=False)
        else:
            x = torch.cat([items, resp], dim=1)
            cache = prefix_cache(rows, pkv)
            mask = torch.ones(rows, p_len + x.shape[1], dtype=torch.long)
            out = model(inputs_embeds=x, attention_mask=mask, past_key_values=cache, use_cache=True)
        return out.last_hidden_state[:, -1]

    hist = histories(a.batch, a.items, 31, 7)
    labels = torch.arange(a.batch)
    model.train()
    times, step_tokens, losses = [], [], []
    for s in range(a.steps + 1):
        tokens[0] = 0
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(score(user_vectors(hist)), labels)
        loss.backward()
        opt.step()
        if s > 0:
            times.append(time.perf_counter() - t)
        step_tokens.append(tokens[0])
        losses.append(loss.item())
    print(f"step_s {median(times):.4f}")
    print(f"step_tokens {step_tokens[-1]}")
    print(f"losses {' '.join(f'{x:.4f}' for x in losses)}")

    model.eval()
    ehist = histories(a.eval_batch, a.items, 17, 3)
    times = []
    with torch.no_grad():
        tokens[0] = 0
        pkv = None
        if a.variant == "prefix":
            out = model(inputs_embeds=embed(instruct_ids), attention_mask=torch.ones(1, p_len, dtype=torch.long),
                        use_cache=True)
            pkv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        prefix_tokens = tokens[0]
        for _ in range(3):
            tokens[0] = 0
            t = time.perf_counter()
            scores = score(user_vectors(ehist, pkv))
            times.append(time.perf_counter() - t)
        eval_tokens = tokens[0]
        if scores.shape != (a.eval_batch, N_ITEMS):
            die(f"scores are {tuple(scores.shape)}")
        if a.variant == "prefix":
            # The broadcast prefix must give what the full sequence gives (first 4 rows, untimed).
            n = min(4, a.eval_batch)
            diff = (user_vectors(ehist[:n], pkv) - user_vectors(ehist[:n], variant="full")).abs().max().item()
            print(f"prefix_vs_full_max_abs_diff {diff:.2e}")
            if diff > 1e-3:
                die(f"the broadcast prefix differs from the full sequence by {diff}")
    print(f"eval_batch_s {median(times):.4f}")
    print(f"eval_tokens {eval_tokens} (+{prefix_tokens} once)")
    print(f"peak_rss_mib {peak_rss_mib():.0f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    m.set_defaults(fn=cmd_make)
    r = sub.add_parser("run")
    r.add_argument("model")
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--items", type=int, default=10)
    r.add_argument("--steps", type=int, default=5)
    r.add_argument("--eval-batch", type=int, default=64)
    r.add_argument("--prompt", default="49,6")
    r.add_argument("--variant", choices=["full", "prefix"], default="full")
    r.set_defaults(fn=cmd_run)
    a = p.parse_args()
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    a.fn(a)


if __name__ == "__main__":
    main()
