//! Every numeric hyperparameter is checked before any data is read or any weight is allocated:
//! values that used to panic (`n_heads = 0`, `inner_size = 0`), abort on a failed allocation
//! (`hidden_size = 1e12`, `max_len = 1e11`) or train to garbage (`lr = inf`, `hidden_dropout =
//! nan` or `1.5`, `layer_norm_eps = -1`) are refused with the file, the key, the value and the
//! allowed range.
mod common;

#[test]
fn out_of_range_hyperparameters_are_refused_up_front_by_key() {
    let dir = tempfile::tempdir().unwrap();
    // The data does not even exist: the config is refused before anything is read.
    let cases: &[(&str, &str, &str)] = &[
        ("sasrec", "n_heads = 0", "encoder.n_heads = 0"),
        ("sasrec", "n_heads = 3", "divide hidden_size (64)"),
        ("sasrec", "inner_size = 0", "encoder.inner_size = 0"),
        ("sasrec", "hidden_size = 0", "encoder.hidden_size = 0"),
        ("sasrec", "hidden_size = 1000000000000", "encoder.hidden_size = 1000000000000: must lie in 1..=65536"),
        ("sasrec", "max_len = 100000000000", "encoder.max_len = 100000000000"),
        ("sasrec", "hidden_dropout = nan", "encoder.hidden_dropout = NaN"),
        ("sasrec", "hidden_dropout = 1.5", "encoder.hidden_dropout = 1.5: must be a probability in [0, 1)"),
        ("sasrec", "layer_norm_eps = -1.0", "encoder.layer_norm_eps = -1"),
        ("bert4rec", "mask_ratio = 2.0", "encoder.mask_ratio = 2"),
        ("bert4rec", "max_len = 1", "encoder.max_len = 1: must lie in 2..=65536"),
        ("gru4rec", "num_layers = 0", "encoder.num_layers = 0"),
        ("gru4rec", "dropout_prob = -0.1", "encoder.dropout_prob = -0.1"),
    ];
    for (kind, line, want) in cases {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, format!("[data]\nsequences = \"missing.txt\"\n\n[encoder]\nkind = \"{kind}\"\n{line}\n")).unwrap();
        let o = common::encore().args(["train"]).arg(&cfg).arg("--out").arg(dir.path().join("out")).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{line}: {err}");
        assert!(err.contains(want) && err.contains("bad.toml"), "{line}: `{want}` not in\n{err}");
        assert!(!err.contains("panicked") && !err.contains("missing.txt"), "{line}: {err}");
    }
    for (line, want) in [
        ("lr = inf", "train.lr = inf"),
        ("lr = -0.1", "train.lr = -0.1"),
        ("weight_decay = nan", "train.weight_decay = NaN"),
        ("batch_size = 0", "train.batch_size = 0"),
        ("min_context = 50", "train.min_context = 50"),
        ("batch_unit = \"prefixes\"", "batch_unit"),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, format!("[data]\nsequences = \"missing.txt\"\n\n[encoder]\nkind = \"sasrec\"\n\n[train]\n{line}\n")).unwrap();
        let o = common::encore().args(["train"]).arg(&cfg).arg("--out").arg(dir.path().join("out")).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code() == Some(1) && err.contains(want), "{line}: `{want}` not in\n{err}");
    }
    assert!(!dir.path().join("out").exists());
}
