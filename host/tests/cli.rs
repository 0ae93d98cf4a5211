//! The `encore` binary end to end: plugin list/check/new, eval on the shipped sample, bad input.
mod common;

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("running encore");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn sample() -> std::path::PathBuf {
    common::workspace().join("data/sample/rankings.parquet")
}

#[test]
fn plugin_list_shows_every_plugin_and_the_refused_one() {
    let (ok, out, err) = run(common::encore().args(["plugin", "list"]));
    assert!(ok, "{err}");
    for name in ["recall", "ndcg", "mrr", "hit", "precision", "map", "coverage", "concat", "weighted-sum", "cross-attention", "film", "gated"] {
        let line = out.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("{name} missing:\n{out}"));
        assert!(line.contains("0.1.0"), "{line}");
    }
    assert!(out.lines().any(|l| l.contains("hostile_api.wasm") && l.contains("encore:plugin@0.0.1")), "{out}");
}

#[test]
fn plugin_check_exercises_every_built_in_plugin() {
    for name in ["recall", "ndcg", "mrr", "hit", "precision", "map", "coverage", "concat", "weighted_sum", "cross_attention", "film", "gated"] {
        let (ok, out, err) = run(common::encore().args(["plugin", "check"]).arg(common::plugin_file(name)));
        assert!(ok && out.starts_with("ok: "), "{name}: {out}{err}");
    }
    let (ok, _, err) = run(common::encore().args(["plugin", "check"]).arg(common::plugin_file("hostile-panic")));
    assert!(!ok && err.contains("`hostile-panic`") && err.contains("panicked"), "{err}");
}

#[test]
fn eval_on_the_shipped_sample_writes_results() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("results.parquet");
    let (ok, out, err) = run(common::encore().args(["eval", "--rankings"]).arg(sample()).arg("--out").arg(&out_file));
    assert!(ok, "{err}");
    assert!(out.contains("1000 users, 2000 items"), "{out}");
    for m in ["recall", "ndcg", "mrr", "hit", "precision", "map", "coverage"] {
        assert!(out.lines().any(|l| l.starts_with(m)), "{m} missing:\n{out}");
    }
    let bytes = std::fs::read(&out_file).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
}

#[test]
fn eval_metrics_match_the_native_definitions_on_the_sample() {
    let file = encore::eval::rankings::read(&sample(), None).unwrap();
    let (ok, out, err) = run(common::encore().args(["eval", "--bootstrap", "0", "--k", "10", "--metrics", "recall,ndcg", "--rankings"]).arg(sample()));
    assert!(ok, "{err}");
    let n = file.rankings.len() as f64;
    let recall: f64 = file.rankings.iter().map(|r| encore::eval::native::recall(&r.ranked[..10], &r.targets)).sum::<f64>() / n;
    let ndcg: f64 = file.rankings.iter().map(|r| encore::eval::native::ndcg(&r.ranked[..10], &r.targets, 10)).sum::<f64>() / n;
    assert!(out.contains(&format!("recall  {recall:.4}")), "{recall:.4}\n{out}");
    assert!(out.contains(&format!("ndcg    {ndcg:.4}")), "{ndcg:.4}\n{out}");
}

#[test]
fn bad_rankings_files_get_errors_that_name_file_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("not.parquet"), "user\tranked\n").unwrap();
    let (ok, _, err) = run(common::encore().args(["eval", "--rankings"]).arg(p("not.parquet")));
    assert!(!ok && err.contains("not.parquet") && err.contains("not a readable Parquet file"), "{err}");

    let w = |name: &str, ranked: Vec<u32>, n: u32| {
        encore::eval::rankings::write(&p(name), &["u0".into(), "u1".into()], &[vec![0, 1], ranked], &[vec![1], vec![2]], n).unwrap();
    };
    w("range.parquet", vec![3, 99], 10);
    let (ok, _, err) = run(common::encore().args(["eval", "--rankings"]).arg(p("range.parquet")));
    assert!(!ok && err.contains("range.parquet: row 1 (user u1)") && err.contains("item 99 is outside the catalog of 10"), "{err}");

    w("dup.parquet", vec![4, 4], 10);
    let (ok, _, err) = run(common::encore().args(["eval", "--rankings"]).arg(p("dup.parquet")));
    assert!(!ok && err.contains("row 1") && err.contains("item 4 appears twice"), "{err}");

    let (ok, _, err) = run(common::encore().args(["eval", "--metrics", "no-such-metric", "--rankings"]).arg(sample()));
    assert!(!ok && err.contains("no metric plugin named `no-such-metric`"), "{err}");

    let (ok, _, err) = run(common::encore().args(["eval", "--metrics", "concat", "--rankings"]).arg(sample()));
    assert!(!ok && err.contains("is a fusion plugin, but a metric plugin is needed"), "{err}");
}

#[test]
fn compiled_components_are_cached_and_a_corrupt_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let rt = encore::plugins::Runtime::new(Default::default(), Some(cache.path().to_path_buf())).unwrap();
    let t0 = std::time::Instant::now();
    rt.load(&common::plugin_file("ndcg")).unwrap();
    let cold = t0.elapsed();
    // The entry; its MAC and the cache's key lie beside it (tests/compile_cache.rs).
    let entries: Vec<_> =
        std::fs::read_dir(cache.path()).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = entries[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.contains("wasmtime48.0.8") && name.ends_with(".cwasm"), "{name}");
    let t1 = std::time::Instant::now();
    rt.load(&common::plugin_file("ndcg")).unwrap();
    eprintln!("cold load {cold:?}, cached load {:?}", t1.elapsed());
    std::fs::write(&entries[0], b"garbage").unwrap();
    let p = rt.load(&common::plugin_file("ndcg")).unwrap();
    assert_eq!(p.info().name, "ndcg");
    assert!(std::fs::read(&entries[0]).unwrap().len() > 1000, "the corrupt entry was rewritten");
}

/// `encore plugin new` for each kind: the crate passes its own test, builds to Wasm, and the host
/// loads and exercises it.
#[test]
fn plugin_new_scaffolds_crates_that_build_test_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for (kind, name) in [("metric", "my-metric"), ("fusion", "my-fusion"), ("extractor", "my-extractor")] {
        let (ok, out, err) = run(common::encore().args(["plugin", "new", "--kind", kind, name, "--dir"]).arg(dir.path()));
        assert!(ok, "{out}{err}");
        let root = dir.path().join(name);
        // Same dependency versions as the workspace, and its already-built artifacts.
        std::fs::copy(common::workspace().join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
        let cargo_in = |args: &[&str]| {
            let out = Command::new(&cargo).args(args).current_dir(&root).env("CARGO_TARGET_DIR", common::target_dir()).output().unwrap();
            assert!(out.status.success(), "cargo {args:?} in {name}:\n{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let tests = cargo_in(&["test"]);
        assert!(tests.contains("test result: ok. 1 passed"), "{tests}");
        cargo_in(&["build", "--release", "--target", "wasm32-wasip2"]);
        let wasm = common::target_dir().join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
        let (ok, out, err) = run(common::encore().args(["plugin", "check"]).arg(&wasm));
        assert!(ok && out.contains(&format!("ok: {name} 0.1.0 ({kind} plugin")), "{out}{err}");
        let _ = std::fs::remove_file(&wasm);
    }
    let (ok, _, err) = run(common::encore().args(["plugin", "new", "--kind", "metric", "my-metric", "--dir"]).arg(dir.path()));
    assert!(!ok && err.contains("already exists"), "{err}");
    assert!(Path::new(&dir.path().join("my-metric/src/lib.rs")).exists());
}
