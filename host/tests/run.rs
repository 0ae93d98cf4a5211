//! `encore run`: the pipeline end to end on the embedded sample.
mod common;
#[path = "common/tiny_models.rs"]
mod tiny_models;

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
    // report.md: the same numbers as the printed table, the best of each column in bold.
    assert!(stdout.contains(&format!("report: {}", out.join("report.md").display())), "{stdout}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Full ranking over all") && md.lines().any(|l| l.starts_with("| GRU4Rec | ") && l.contains("**")), "{md}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("GRU4Rec") && html.contains("MostPop"), "{html}");
    let recall10 = row("GRU4Rec").split_whitespace().nth(2).unwrap().split('±').next().unwrap().to_string();
    assert!(md.lines().any(|l| l.starts_with("| GRU4Rec | ") && l.contains(&recall10)), "{recall10} not in\n{md}");

    // A second run reuses the prepared data; one whose files no longer verify prepares it again
    // and prints the same table.
    let again = |what: &str| {
        let o = common::encore().args(["run"]).arg(&cfg).arg("--out").arg(&out).arg("--quiet").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{what}: {err}");
        assert_eq!(String::from_utf8_lossy(&o.stdout), stdout, "{what}: another table");
        err
    };
    assert!(again("reuse").contains("data: reusing"));
    let train = out.join("data/train.parquet");
    let mut bytes = std::fs::read(&train).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&train, bytes).unwrap();
    let err = again("a flipped bit");
    assert!(err.contains("does not verify") && err.contains("train.parquet") && err.contains("preparing it again"), "{err}");
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

/// `[[llm]]` (E4SRec over the GRU4Rec table) and `[[zero_shot]]` on a tiny random-weight llama
/// folder: both train or score, appear in the reports, and write their files; E4SRec is
/// compared case by case with the encoder it reads.
#[test]
fn run_trains_e4srec_and_ranks_zero_shot_next_to_the_encoders() {
    let dir = tempfile::tempdir().unwrap();
    let llm = dir.path().join("tiny-llama");
    tiny_models::write_llama(&llm, false, 9);
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

[[llm]]
model = "tiny-llama"
encoder = "GRU4Rec"
[llm.prompt]
max_items = 5
[llm.train]
steps = 6
batch_size = 8
eval_every = 3
valid_cases = 32

[[zero_shot]]
model = "tiny-llama"
cases = 12
negatives = 9

[[zero_shot]]
model = "tiny-llama"
name = "ReRank"
cases = 60
rerank = "GRU4Rec"
top = 20

[train]
epochs = 1
batch_size = 256

[report]
metrics = ["recall", "ndcg"]
bootstrap = 100
random_baseline = true
sampled_negatives = 99
"#,
            data_cfg.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = common::encore().args(["run"]).arg(&cfg).arg("--out").arg(&out).arg("--quiet").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stdout}\n{stderr}");
    for name in ["MostPop", "Random", "GRU4Rec", "E4SRec/GRU4Rec", "GRU4Rec 1+99", "E4SRec/GRU4Rec 1+99"] {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("{name} ")) && l.matches('±').count() == 6), "no {name} row:\n{stdout}");
    }
    assert!(stderr.contains("E4SRec/GRU4Rec: best validation ndcg@10"), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("E4SRec/GRU4Rec ") && l.contains(" all ") && l.contains("recall@10") && l.contains("vs GRU4Rec:")),
        "E4SRec is compared with the encoder it reads:\n{stderr}"
    );
    for name in [
        "MostPop (zs 12, 1+9)",
        "GRU4Rec (zs 12, 1+9)",
        "E4SRec/GRU4Rec (zs 12, 1+9)",
        "ZeroShot (zs 12, 1+9)",
        "GRU4Rec (zs 60, top 20 of GRU4Rec)",
        "ReRank (zs 60, top 20 of GRU4Rec)",
    ] {
        assert!(stderr.lines().any(|l| l.starts_with(name)), "no {name} row:\n{stderr}");
    }
    // Re-ranking the top 20 changes the order within it, not the set: recall@20 (the third
    // column) is the encoder's own on the same cases, while the others may differ.
    let col = |name: &str, c: usize| {
        let l = stderr.lines().find(|l| l.starts_with(name)).unwrap();
        l[name.len()..].split_whitespace().nth(c).unwrap().split('±').next().unwrap().to_string()
    };
    let r20 = col("GRU4Rec (zs 60, top 20 of GRU4Rec)", 2);
    assert_eq!(r20, col("ReRank (zs 60, top 20 of GRU4Rec)", 2), "{stderr}");
    assert!(r20.parse::<f64>().unwrap() > 0.0, "some targets are in the top 20: {stderr}");
    for f in [
        "e4srec-gru4rec/adapter/adapter_model.safetensors",
        "e4srec-gru4rec/adapter/adapter_config.json",
        "e4srec-gru4rec/e4srec_heads.safetensors",
        "e4srec-gru4rec/checkpoint.toml",
        "e4srec-gru4rec/test_metrics.parquet",
        "zero_shot_results.parquet",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for section in ["## Full ranking over all", "## The sampled protocol (1 positive + 99 negatives)", "## Against each model's baseline", "## Zero-shot"] {
        assert!(md.contains(section), "no {section} in\n{md}");
    }
    assert!(md.lines().any(|l| l.starts_with("| E4SRec/GRU4Rec | all | recall@10 |") && l.contains("| GRU4Rec 0.")), "{md}");
    assert!(md.lines().any(|l| l.starts_with("| GRU4Rec | ") && l.contains('×')), "the inflation of sampling:\n{md}");
    // A rerun reuses every finished stage: the same table, nothing trained again.
    let o2 = common::encore().args(["run"]).arg(&cfg).arg("--out").arg(&out).arg("--quiet").output().unwrap();
    let (stdout2, stderr2) = (String::from_utf8_lossy(&o2.stdout), String::from_utf8_lossy(&o2.stderr));
    assert!(o2.status.success(), "{stderr2}");
    assert_eq!(stdout2, stdout, "a rerun gives the same table");
    assert!(stderr2.contains("data: reusing") && stderr2.contains("GRU4Rec: finished before (epoch 1 of 1)"), "{stderr2}");
    assert!(stderr2.contains("resuming E4SRec from step 6") && !stderr2.contains("training anew"), "{stderr2}");
    // One more epoch: the encoder continues from its checkpoint, and E4SRec, whose item table
    // changed with it, sets the old checkpoint aside and trains anew.
    let text = std::fs::read_to_string(&cfg).unwrap().replace("epochs = 1", "epochs = 2");
    std::fs::write(&cfg, text).unwrap();
    let o3 = common::encore().args(["run"]).arg(&cfg).arg("--out").arg(&out).arg("--quiet").output().unwrap();
    let stderr3 = String::from_utf8_lossy(&o3.stderr);
    assert!(o3.status.success(), "{stderr3}");
    assert!(stderr3.contains("GRU4Rec: continued after epoch 1 of 2"), "{stderr3}");
    assert!(stderr3.contains("E4SRec/GRU4Rec: ") && stderr3.contains("training anew") && !stderr3.contains("resuming E4SRec"), "{stderr3}");
    assert!(out.join("e4srec-gru4rec/.stale-0/checkpoint.toml").is_file(), "the old checkpoint is kept aside");

    // `encore eval --zero-shot`: the same ranker on its own, over the prepared data.
    let o = common::encore()
        .args(["eval", "--zero-shot"])
        .arg(&llm)
        .arg("--data")
        .arg(out.join("data"))
        .args(["--cases", "10", "--negatives", "9", "--k", "5,10", "--metrics", "recall,ndcg", "--bootstrap", "50", "--out"])
        .arg(dir.path().join("zs.parquet"))
        .output()
        .unwrap();
    let (zs_out, zs_err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{zs_err}");
    for row in ["MostPop (zs 10, 1+9)", "Random (zs 10, 1+9)", "hf:tiny-llama (zs 10, 1+9)"] {
        assert!(zs_out.lines().any(|l| l.starts_with(row) && l.matches('±').count() == 4), "{row}:\n{zs_out}");
    }
    assert!(zs_err.contains("candidates/s") && dir.path().join("zs.parquet").is_file(), "{zs_err}");
    let o = common::encore().args(["eval", "--zero-shot"]).arg(&llm).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--data"), "--zero-shot needs --data");

    // An [[llm]] naming no [[encoder]] is refused before anything runs.
    let text = std::fs::read_to_string(&cfg).unwrap().replace("encoder = \"GRU4Rec\"", "encoder = \"SASRec\"");
    std::fs::write(&cfg, text).unwrap();
    let o = common::encore().args(["run"]).arg(&cfg).arg("--out").arg(dir.path().join("out2")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("reads encoder `SASRec`") && err.contains("GRU4Rec"), "{err}");
    assert!(!dir.path().join("out2").exists(), "nothing was written");
}
