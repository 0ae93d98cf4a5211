"""The parity table: encore's `summary.toml` files next to recbole_run.py's JSON records.

python bench/encoders/parity.py RECBOLE.jsonl ENCORE_SUMMARY.toml... (file names as in parity/:
encore-MODEL-SEED[-eN].toml)"""
import json
import os
import sys
import tomllib
from statistics import mean

NAMES = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "bert4rec": "BERT4Rec"}


def main():
    rb = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    enc = {}
    for p in sys.argv[2:]:
        parts = os.path.basename(p)[len("encore-"):-len(".toml")].split("-")
        with open(p, "rb") as f:
            s = tomllib.load(f)
        enc.setdefault((NAMES[parts[0]], parts[2] if len(parts) > 2 else f"e{s['epochs']}"), []).append((int(parts[1]), s))
    print("model     side (epochs)     seeds        test R@10 per seed / mean   test NDCG@10 per seed / mean   best valid R@10   rel. diff R@10, NDCG@10")
    for model in ["SASRec", "GRU4Rec", "BERT4Rec"]:
        r = sorted((x for x in rb if x["model"] == model), key=lambda x: x["seed"])
        rr, rn = [x["test"]["recall@10"] for x in r], [x["test"]["ndcg@10"] for x in r]
        ep = len(r[0]["epoch_seconds"])
        print(f"{model:<9} RecBole ({ep:>2})      {','.join(str(x['seed']) for x in r):<12} "
              f"{' '.join(f'{v:.4f}' for v in rr)} / {mean(rr):.4f}   {' '.join(f'{v:.4f}' for v in rn)} / {mean(rn):.4f}   "
              + " ".join(f"{x['best_valid']:.4f}" for x in r))
        for (m, tag), runs in sorted(enc.items()):
            if m != model:
                continue
            runs.sort(key=lambda x: x[0])
            er = [s["test"]["recall@10"] for _, s in runs]
            en = [s["test"]["ndcg@10"] for _, s in runs]
            print(f"{'':<9} encore ({runs[0][1]['epochs']:>2})       {','.join(str(sd) for sd, _ in runs):<12} "
                  f"{' '.join(f'{v:.4f}' for v in er)} / {mean(er):.4f}   {' '.join(f'{v:.4f}' for v in en)} / {mean(en):.4f}   "
                  + " ".join(f"{s['best_valid']:.4f}" for _, s in runs) + "   "
                  + f"{(mean(er) / mean(rr) - 1) * 100:+.1f}%, {(mean(en) / mean(rn) - 1) * 100:+.1f}%")


if __name__ == "__main__":
    main()
