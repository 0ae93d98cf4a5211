//! `encore train` with `[fusion]`, end to end through the CLI: a content-aware SASRec trains,
//! its checkpoints hold the plan's weights by node, and every bad plugin, plan or features file
//! is a clear error that names it, given before training and leaving nothing behind.
mod common;
use common::s;
use encore::features::store::{self, Row, Status};
use std::path::{Path, PathBuf};

/// A small prepared dataset (synthetic log, default filters).
fn prepared(dir: &Path) -> PathBuf {
    let (synth, prep) = (dir.join("synth"), dir.join("prep"));
    for args in [
        vec!["data", "synth", "--users", "20", "--tracks", "300", "--rows", "6000", "--styles", "6", "--out", s(&synth)],
        vec!["data", "prepare", s(&synth.join("listens.tsv")), "--out", s(&prep)],
    ] {
        let o = common::encore().args(&args).output().unwrap();
        assert!(o.status.success(), "encore {args:?}:\n{}", String::from_utf8_lossy(&o.stderr));
    }
    prep
}

/// `features/<name>.parquet` over the catalog, a vector of width `dim` for each item but every
/// `missing_every`-th (`0`: none missing), or over only the first `limit` items.
fn write_features(prep: &Path, name: &str, dim: usize, missing_every: usize, limit: Option<usize>) {
    let catalog = encore::train::fusion::catalog(prep).unwrap();
    let rows: Vec<Row> = catalog
        .iter()
        .enumerate()
        .take(limit.unwrap_or(usize::MAX))
        .map(|(i, id)| {
            let missing = missing_every > 0 && i % missing_every == 0;
            Row {
                item: i as u32,
                track_id: id.clone(),
                input_key: format!("k{i}"),
                status: if missing { Status::Missing } else { Status::Ok },
                reason: missing.then(|| "no clip".into()),
                vector: (!missing).then(|| (0..dim).map(|j| ((i * 31 + j * 7) % 13) as f32 / 13.0 - 0.5).collect()),
            }
        })
        .collect();
    std::fs::create_dir_all(prep.join("features")).unwrap();
    let file = prep.join(format!("features/{name}.parquet"));
    store::write(&file, &rows, dim, "test").unwrap();
    store::write_manifest(&file, toml::Table::new()).unwrap();
}

fn config(dir: &Path, prep: &Path, fusion: &str) -> PathBuf {
    let text = format!(
        "[data]\nprepared = \"{}\"\n\n[encoder]\nkind = \"sasrec\"\nhidden_size = 16\nn_layers = 1\nn_heads = 1\ninner_size = 32\nmax_len = 10\n\n[train]\nepochs = 2\nbatch_size = 64\nseed = 3\n\n{fusion}\n",
        prep.display()
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(cfg: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let o = common::encore().args(["train", s(cfg), "--out", s(out), "--quiet"]).args(extra).output().unwrap();
    (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn a_fused_sasrec_trains_checkpoints_its_plan_by_node_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let prep = prepared(dir.path());
    write_features(&prep, "a", 6, 5, None);
    write_features(&prep, "b", 3, 0, None);
    let cfg = config(dir.path(), &prep, "[fusion]\nplugin = \"weighted-sum\"\nmodalities = [\"a\", \"b\"]");
    let out = dir.path().join("run");
    let (ok, log) = train(&cfg, &out, &[]);
    assert!(ok, "{log}");
    assert!(log.contains("fusion: `weighted-sum` over id, a, b"), "{log}");
    let weights = safetensors_names(&out.join("best.safetensors"));
    // Nodes: id 0 and its linear 1 (the id part keeps its length: no l2 node); a 2, 3, 4; b 5, 6,
    // 7; the weighted sum 8.
    for want in ["fusion.n1.linear.weight", "fusion.n3.linear.weight", "fusion.n6.linear.bias", "fusion.n8.weights", "item_embedding.weight"] {
        assert!(weights.iter().any(|w| w == want), "{want} not in {weights:?}");
    }
    // Exported embeddings are the fused table.
    assert!(out.join("item_embeddings.parquet").is_file());
    let summary = std::fs::read_to_string(out.join("summary.toml")).unwrap();
    // A resume of a finished run loads the plan's weights and ends with the same result.
    let (ok, log) = train(&cfg, &out, &["--resume"]);
    assert!(ok, "{log}");
    assert_eq!(std::fs::read_to_string(out.join("summary.toml")).unwrap(), summary);
    // The same run with another fusion is another config: resuming it is refused.
    let other = config(dir.path(), &prep, "[fusion]\nplugin = \"concat\"\nmodalities = [\"a\", \"b\"]");
    let (ok, log) = train(&other, &out, &["--resume"]);
    assert!(!ok && log.contains("does not match"), "{log}");
}

fn safetensors_names(path: &Path) -> Vec<String> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap().into_keys().collect()
}

#[test]
fn bad_plugins_plans_and_features_are_clear_errors_that_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let prep = prepared(dir.path());
    write_features(&prep, "a", 3, 0, None);
    write_features(&prep, "short", 3, 0, Some(10));
    write_features(&prep, "none", 3, 1, None);
    let hostile = |mode: &str| format!("[fusion]\nplugin = \"hostile-fusion\"\nmodalities = [\"a\"]\nparams = {{ mode = \"{mode}\" }}");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (hostile("trap"), vec!["`hostile-fusion`", "panicked", "planning failed on purpose"]),
        (hostile("width"), vec!["`hostile-fusion`", "width 17, but 16 was asked for"]),
        (hostile("mismatch"), vec!["`hostile-fusion`", "combines widths 16", "and 3"]),
        (hostile("unknown"), vec!["`hostile-fusion`", "`no-such-modality`", "not one of: id, a"]),
        (hostile("huge"), vec!["`hostile-fusion`", "trainable parameters", "node 2 (gate)"]),
        ("[fusion]\nplugin = \"no-such-fusion\"\nmodalities = [\"a\"]".into(), vec!["no fusion plugin named `no-such-fusion`"]),
        ("[fusion]\nplugin = \"cross-attention\"\nmodalities = [\"lyrics\"]".into(), vec!["modality `lyrics`", "encore features extract", "--plugin lyrics"]),
        ("[fusion]\nplugin = \"film\"\nmodalities = [\"short\"]".into(), vec!["modality `short`", "has 10 rows, but the prepared data has"]),
        ("[fusion]\nplugin = \"gated\"\nmodalities = [\"none\"]".into(), vec!["modality `none`", "every vector", "missing"]),
        (
            "[fusion]\nplugin = \"weighted-sum\"\nmodalities = [\"a\"]\nparams = { weights = [1.0] }".into(),
            vec!["`weighted-sum`", "`weights` must be 2 numbers"],
        ),
        ("[fusion]\nplugin = \"weighted-sum\"\nmodality = [\"a\"]".into(), vec!["unknown field `modality`"]),
    ];
    for (fusion, wants) in cases {
        let cfg = config(dir.path(), &prep, &fusion);
        let out = dir.path().join("out");
        let (ok, log) = train(&cfg, &out, &[]);
        assert!(!ok, "{fusion}: accepted\n{log}");
        for w in wants {
            assert!(log.contains(w), "{fusion}: `{w}` not in\n{log}");
        }
        assert!(!log.contains("panicked at") || fusion.contains("trap"), "the host panicked: {log}");
        assert!(!log.contains("epoch"), "{fusion}: training started\n{log}");
        assert!(!out.exists(), "{fusion}: {} was written", out.display());
    }
}

#[test]
fn the_readme_fusion_plugin_builds_from_a_scaffold_and_trains_without_a_host_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let prep = prepared(dir.path());
    write_features(&prep, "a", 4, 3, None);
    // Its own crate name, so that it never shares an output file with cli.rs's scaffold test.
    let o = common::encore().args(["plugin", "new", "--kind", "fusion", "readme-fusion", "--dir", s(dir.path())]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let root = dir.path().join("readme-fusion");
    // The plugin of the README's "Write a fusion plugin", as a reader would copy it.
    let readme = std::fs::read_to_string(common::workspace().join("README.md")).unwrap();
    let section = &readme[readme.find("### Write a fusion plugin").expect("the README section")..];
    let code = section.split("```rust\n").nth(1).and_then(|c| c.split("```").next()).expect("a rust block");
    std::fs::write(root.join("src/lib.rs"), code).unwrap();
    std::fs::copy(common::workspace().join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", common::target_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let wasm = dir.path().join("readme_fusion.wasm");
    let built = common::target_dir().join("wasm32-wasip2/release/readme_fusion.wasm");
    std::fs::copy(&built, &wasm).unwrap();
    let _ = std::fs::remove_file(&built);
    let cfg = config(dir.path(), &prep, &format!("[fusion]\nplugin = \"{}\"\nmodalities = [\"a\"]", wasm.display()));
    let out_dir = dir.path().join("run");
    let (ok, log) = train(&cfg, &out_dir, &[]);
    assert!(ok, "{log}");
    assert!(log.contains("fusion: `") && log.contains("over id, a"), "{log}");
    let weights = safetensors_names(&out_dir.join("best.safetensors"));
    assert!(weights.iter().any(|w| w.starts_with("fusion.n") && w.contains("layer_norm")), "{weights:?}");
}
