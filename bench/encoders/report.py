"""Prints run.sh's table from encore's summary.toml files and recbole_run.py's JSON records."""
import argparse
import json
import os
import tomllib

NAMES = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "bert4rec": "BERT4Rec"}


def lower(d):
    return {k.lower(): v for k, v in d.items()}


def time_to_reach(epoch_s, valid_s, history, target):
    """Training + validation seconds until the first validation at or above `target`."""
    t = 0.0
    for e, v, h in zip(epoch_s, valid_s, history):
        t += e + v
        if h >= target - 1e-9:
            return t
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--threads", required=True)
    ap.add_argument("--epochs", required=True)
    ap.add_argument("--load-before", required=True)
    ap.add_argument("--load-after", required=True)
    a = ap.parse_args()
    w = a.work
    rows = []
    for m in a.models.split():
        enc, eenc = {}, {}
        for d, run in ((enc, f"enc-{m}"), (eenc, f"eenc-{m}")):
            for name in ("summary.toml", "timings.toml"):
                path = os.path.join(w, run, name)
                if os.path.exists(path):  # timings.toml: builds before it kept timings in the summary
                    with open(path, "rb") as f:
                        d.update(tomllib.load(f))
        rb = json.loads(open(os.path.join(w, f"rb-{m}.json")).read().strip().splitlines()[-1])
        erb = json.loads(open(os.path.join(w, f"erb-{m}.json")).read().strip().splitlines()[-1])
        rss_train, rss_eval = (int(x) for x in open(os.path.join(w, f"enc-{m}.rss")).read().split())
        e_epoch = sum(enc["epoch_seconds"]) / len(enc["epoch_seconds"])
        r_epoch = sum(rb["epoch_seconds"]) / len(rb["epoch_seconds"])
        r_wall = sum(rb["epoch_seconds"]) + sum(rb["valid_seconds"])
        r_final = rb["valid"][-1]["recall@10"]
        reach = time_to_reach(enc["epoch_seconds"], enc["valid_seconds"], enc["valid_history"], r_final)
        et, rt = lower(enc["test"]), rb["test"]
        rows.append({
            "model": NAMES[m],
            "enc_epoch_s": e_epoch, "rb_epoch_s": r_epoch,
            "reach": None if reach is None else reach / r_wall, "rb_final_valid": r_final,
            "enc_best_valid": max(enc["valid_history"]),
            "enc_eval_s": eenc["test_eval_seconds"], "rb_eval_s": erb["test_eval_seconds"], "eval_users": eenc["test_users"],
            "enc_rss": rss_train, "rb_rss": rb["peak_rss_mib"], "enc_eval_rss": rss_eval, "rb_eval_rss": erb["peak_rss_mib"],
            "enc_r": et["recall@10"], "rb_r": rt["recall@10"], "enc_n": et["ndcg@10"], "rb_n": rt["ndcg@10"],
        })
    print(f"encore vs RecBole 1.2.1, {a.threads} threads each, {a.epochs} epochs; load average before {a.load_before}, after {a.load_after}")
    print("model     epoch s enc/RecBole (ratio)   reach RecBole's final valid R@10   "
          "full-rank eval s enc/RecBole (ratio, users)   peak RSS MiB train enc/RecBole, eval enc/RecBole   "
          "test R@10 enc/RecBole   test NDCG@10 enc/RecBole")
    for r in rows:
        reach = (f"{r['reach']:.2f}x RecBole's wall" if r["reach"] is not None
                 else f"not reached ({r['enc_best_valid']:.4f} < {r['rb_final_valid']:.4f})")
        print(f"{r['model']:<9} {r['enc_epoch_s']:7.2f} / {r['rb_epoch_s']:7.2f} ({r['enc_epoch_s'] / r['rb_epoch_s']:.3f})   "
              f"{reach:<34} "
              f"{r['enc_eval_s']:7.2f} / {r['rb_eval_s']:7.2f} ({r['enc_eval_s'] / r['rb_eval_s']:.3f}, {r['eval_users']})   "
              f"{r['enc_rss']:6.0f} / {r['rb_rss']:6.0f}, {r['enc_eval_rss']:6.0f} / {r['rb_eval_rss']:6.0f}   "
              f"{r['enc_r']:.4f} / {r['rb_r']:.4f}   {r['enc_n']:.4f} / {r['rb_n']:.4f}")


if __name__ == "__main__":
    main()
