"""Trains one RecBole 1.2.1 sequential model on `encore data export recbole` output and prints a
JSON record: per-epoch training and validation seconds, validation metrics per epoch, test
metrics of the best-validation weights, full-ranking test-eval seconds and peak RSS.

The protocol is set to reproduce `encore data prepare --split loo` exactly: every event of
`encore.inter`, ordered by time within each user (`order: TO`), augmented into prefixes,
leave-one-out per user (`LS: valid_and_test`: the last item tests, the one before validates), full
ranking over all items without history masking (RecBole never masks history for sequential
models; encore's side runs with `mask_history = false`). `--check-split DIR` compares RecBole's
validation and test targets with encore's prepared split and stops on any difference.

python recbole_run.py --data DIR/recbole --model SASRec --epochs 10 --threads 2 [--seed 2020]
"""
import argparse
import copy
import json
import os
import resource
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="directory holding encore.inter")
    ap.add_argument("--model", required=True, choices=["SASRec", "BERT4Rec", "GRU4Rec"])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--valid-metric", default="Recall@10")
    ap.add_argument("--eval-only", action="store_true", help="no training: time full-ranking test eval of the initial weights")
    ap.add_argument("--check-split", help="a directory with encore.{valid,test}.inter: compare RecBole's valid/test cases with them")
    ap.add_argument("--gru-layers", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed, init_logger

    data = os.path.abspath(a.data)
    if a.check_split:
        a.check_split = os.path.abspath(a.check_split)
    # RecBole writes log/ and log_tensorboard/ into the working directory: keep them with the data.
    os.chdir(data)
    cfg = {
        "data_path": os.path.dirname(data),
        "dataset": os.path.basename(data),
        "checkpoint_dir": os.path.join(data, ".saved"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "repeatable": True,
        "metrics": ["Recall", "NDCG"],
        "topk": [10],
        "valid_metric": a.valid_metric,
        "epochs": a.epochs,
        "stopping_step": 10**6,
        "train_batch_size": 2048,
        "eval_batch_size": 4096,
        "learning_rate": 0.001,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "use_gpu": a.device == "cuda",
        "seed": a.seed,
        "reproducibility": True,
        "show_progress": False,
        "state": "WARNING",
        "save_dataset": False,
        "save_dataloaders": False,
    }
    if a.model == "GRU4Rec":
        cfg["num_layers"] = a.gru_layers
    # The dataset directory holds encore.inter; RecBole expects DIR/NAME/NAME.inter.
    name = os.path.basename(data)
    link = os.path.join(data, f"{name}.inter")
    if not os.path.exists(link):
        os.symlink(os.path.join(data, "encore.inter"), link)
    config = Config(model=a.model, config_dict=cfg)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(a.threads)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    if a.check_split:
        check_split(dataset, valid_data, test_data, a.check_split)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    out = {
        "framework": "recbole",
        "model": a.model,
        "seed": a.seed,
        "threads": torch.get_num_threads(),
        "n_items": dataset.item_num - 1,
        "train_samples": len(train_data._dataset),
        "test_users": len(test_data._dataset),
        "epoch_seconds": [],
        "valid_seconds": [],
        "valid": [],
        "loss": [],
    }
    key = a.valid_metric.lower()
    best, best_state, best_epoch = None, None, 0
    for epoch in range(0 if a.eval_only else a.epochs):
        t = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch)
        out["epoch_seconds"].append(time.perf_counter() - t)
        out["loss"].append(float(sum(loss) if isinstance(loss, tuple) else loss))
        t = time.perf_counter()
        _, result = trainer._valid_epoch(valid_data)
        out["valid_seconds"].append(time.perf_counter() - t)
        out["valid"].append({k: float(v) for k, v in result.items()})
        v = float(result[key])
        if best is None or v > best:
            best, best_epoch = v, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        print(f"[recbole {a.model}] epoch {epoch + 1}: loss {out['loss'][-1]:.4f} valid {result} "
              f"({out['epoch_seconds'][-1]:.1f}s + {out['valid_seconds'][-1]:.1f}s)", file=sys.stderr, flush=True)
    if best_state is not None:
        model.load_state_dict(best_state)
    out["best_valid"], out["best_epoch"] = best, best_epoch
    t = time.perf_counter()
    test = trainer.evaluate(test_data, load_best_model=False)
    out["test_eval_seconds"] = time.perf_counter() - t
    out["test"] = {k: float(v) for k, v in test.items()}
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def check_split(dataset, valid_data, test_data, prepared):
    """Stops unless RecBole's valid/test (user, history, target) equal encore's loo split."""
    uid = dataset.field2id_token["user_id"]
    iid = dataset.field2id_token["item_id"]

    def recbole_cases(d):
        ds = d._dataset
        users = ds.inter_feat["user_id"].numpy()
        items = ds.inter_feat["item_id"].numpy()
        lists = ds.inter_feat["item_id_list"].numpy()
        lens = ds.inter_feat["item_length"].numpy()
        cases = {}
        for u, t, seq, n in zip(users, items, lists, lens):
            cases[int(uid[u])] = ([int(iid[x]) for x in seq[:n]], int(iid[t]))
        return cases

    def encore_cases(path):
        # encore.{valid,test}.inter: one row per session_id, its events in order; loo rows hold
        # the history and then their one target.
        rows = {}
        with open(path) as f:
            next(f)
            for line in f:
                row, user, item = line.split("\t")[:3]
                rows.setdefault(row, (int(user), []))[1].append(int(item))
        return {u: (items[:-1][-50:], items[-1]) for u, items in rows.values()}

    for split, d in (("valid", valid_data), ("test", test_data)):
        ours = encore_cases(os.path.join(prepared, f"encore.{split}.inter"))
        theirs = recbole_cases(d)
        if ours != theirs:
            diff = [u for u in set(ours) | set(theirs) if ours.get(u) != theirs.get(u)]
            sys.exit(f"split mismatch in {split}: {len(diff)} users differ, e.g. user {diff[0]}: "
                     f"encore {ours.get(diff[0])} vs RecBole {theirs.get(diff[0])}")
        print(f"[recbole] {split} split identical to encore's ({len(ours)} users)", file=sys.stderr)


if __name__ == "__main__":
    main()
