//! `encore run`: the pipeline end to end on the embedded sample.
mod common;

#[test]
fn run_prepares_trains_and_reports_encoder_and_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    let data_cfg = common::workspace().join("configs/data/sample.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[data]
config = "{}"

[[encoder]]
kind = "gru4rec"

[train]
epochs = 2
batch_size = 256
seed = 7

[report]
metrics = ["recall", "ndcg"]
bootstrap = 100
"#,
            data_cfg.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = common::encore().args(["run"]).arg(&cfg).arg("--out").arg(&out).arg("--quiet").output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("full ranking over all items"), "{stdout}");
    let row = |name: &str| stdout.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} row:\n{stdout}")).to_string();
    for name in ["MostPop", "GRU4Rec"] {
        let r = row(name);
        assert_eq!(r.matches('±').count(), 6, "{r}");
    }
    for f in
        ["data/items.parquet", "data/train.parquet", "data/test.parquet", "gru4rec/test_metrics.parquet", "gru4rec/item_embeddings.parquet", "results.parquet"]
    {
        assert!(out.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn run_refuses_unknown_keys_and_missing_encoders() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[[encoder]]\nkind = \"sasrec\"\n\n[train]\nepoch = 3\n").unwrap();
    let o = common::encore().args(["run"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("bad.toml") && err.contains("unknown field `epoch`"), "{err}");
    std::fs::write(&cfg, "[train]\nepochs = 3\n").unwrap();
    let o = common::encore().args(["run"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("encoder"), "{err}");
}

#[test]
fn train_reads_the_splits_that_data_prepare_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = dir.path().join("prepared");
    let o = common::encore()
        .args(["data", "prepare", "--config"])
        .arg(common::workspace().join("configs/data/sample.toml"))
        .arg("--out")
        .arg(&prepared)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = dir.path().join("train.toml");
    std::fs::write(&cfg, "[data]\nprepared = \"prepared\"\n\n[encoder]\nkind = \"gru4rec\"\n\n[train]\nepochs = 1\n").unwrap();
    let o = common::encore().args(["train"]).arg(&cfg).arg("--out").arg(dir.path().join("run")).arg("--quiet").output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(err.contains("1978 items"), "{err}");
    assert!(out.lines().any(|l| l.starts_with("recall")), "{out}");

    std::fs::write(&cfg, "[data]\nprepared = \"prepared\"\nsequences = \"x.txt\"\n\n[encoder]\nkind = \"gru4rec\"\n").unwrap();
    let o = common::encore().args(["train"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("exactly one of `prepared`"), "{err}");
}
