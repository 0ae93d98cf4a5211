//! Hostile plugins, each built from source in tests/plugins/: every one gives a typed error that
//! names it, the host lives on, and no output file is left behind.
mod common;

use encore::eval::MetricSuite;
use encore::plugins::extractor::ExtractorInstance;
use encore::plugins::metric::Ranking;
use encore::plugins::ParamValue;
use encore::plugins::{fusion, Grants, PluginError, SandboxConfig, TrapKind};

fn tight() -> SandboxConfig {
    SandboxConfig { memory_mib: 64, fuel: 100_000_000, ..SandboxConfig::default() }
}

fn users() -> Vec<Ranking> {
    vec![Ranking { ranked: vec![1, 2, 3], targets: vec![2] }]
}

/// Runs a metric plugin under a 64 MiB cap and a small fuel budget; returns its error.
fn metric_error(name: &str) -> PluginError {
    let plugin = common::runtime(tight()).load(&common::plugin_file(name)).unwrap();
    let mut suite = MetricSuite::new(&[plugin], &[5], 10).unwrap();
    let err = suite.add(&users()).expect_err("a hostile plugin must fail");
    assert!(err.to_string().contains(&format!("`{name}`")), "error does not name the plugin: {err}");
    assert!(err.to_string().contains(".wasm"), "error does not name the file: {err}");
    // The host lives on: a good plugin still runs in the same process.
    let mut ok = MetricSuite::new(&[common::load("recall")], &[5], 10).unwrap();
    ok.add(&users()).unwrap();
    assert_eq!(ok.finish(None).unwrap().get("recall", 5), Some(1.0));
    err
}

fn extract_error(name: &str, cfg: SandboxConfig, params: &[(String, ParamValue)]) -> Result<Vec<Option<Vec<f32>>>, PluginError> {
    // Grants belong to the runtime: a fresh one with exactly these limits.
    let plugin = common::runtime(cfg).load(&common::plugin_file(name)).unwrap();
    let mut x = ExtractorInstance::new(&plugin, params)?;
    x.extract(&[common::track(0)], &[None])
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let err = metric_error("hostile-loop");
    assert!(matches!(err.trap_kind(), Some(TrapKind::OutOfFuel { fuel: 100_000_000 })), "{err}");
}

#[test]
fn a_1_gib_allocation_under_a_64_mib_cap_is_stopped() {
    let err = metric_error("hostile-alloc");
    match err.trap_kind() {
        Some(TrapKind::OutOfMemory { requested, cap }) => {
            assert_eq!(*cap, 64 << 20);
            assert!(*requested > 1 << 30, "requested {requested}");
        }
        _ => panic!("expected OutOfMemory, got {err}"),
    }
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let err = metric_error("hostile-panic");
    match err.trap_kind() {
        Some(TrapKind::Panic(msg)) => assert!(msg.contains("boom: this plugin cannot rank 3 items"), "{msg}"),
        _ => panic!("expected Panic, got {err}"),
    }
}

#[test]
fn a_dead_instance_is_not_entered_again() {
    let plugin = common::runtime(tight()).load(&common::plugin_file("hostile-panic")).unwrap();
    let mut suite = MetricSuite::new(&[plugin], &[5], 10).unwrap();
    suite.add(&users()).unwrap_err();
    let again = suite.add(&users()).unwrap_err();
    assert_eq!(again.trap_kind(), Some(&TrapKind::Dead), "{again}");
}

#[test]
fn nan_is_an_invalid_result() {
    let err = metric_error("hostile-nan");
    assert!(matches!(&err, PluginError::InvalidResult { reason, .. } if reason.contains("NaN")), "{err}");
}

#[test]
fn a_wrong_length_result_is_an_invalid_result() {
    let err = metric_error("hostile-short");
    assert!(matches!(&err, PluginError::InvalidResult { reason, .. } if reason.contains("returned 0 values for a batch of 1 users")), "{err}");
}

#[test]
fn a_wrong_api_version_is_refused_at_load() {
    let err = common::runtime(tight()).load(&common::plugin_file("hostile-api")).err().expect("must not load");
    match &err {
        PluginError::ApiMismatch { plugin, found, expected } => {
            assert_eq!(plugin.name, "hostile-api");
            assert_eq!(found, "0.0.1");
            assert_eq!(expected, encore::plugins::API_VERSION);
        }
        _ => panic!("expected ApiMismatch, got {err}"),
    }
    assert!(err.to_string().contains("rebuild it with encore-sdk"), "{err}");
}

#[test]
fn reading_a_file_is_denied() {
    let params = [("what".to_string(), ParamValue::Text("file".into()))];
    let err = extract_error("hostile-io", tight(), &params).unwrap_err();
    match err.trap_kind() {
        Some(TrapKind::CapabilityDenied(import)) => assert!(import.starts_with("wasi:filesystem/"), "{import}"),
        _ => panic!("expected CapabilityDenied, got {err}"),
    }
    assert!(err.to_string().contains("hostile-io"));
}

#[test]
fn reading_an_env_var_is_denied_unless_granted() {
    std::env::set_var("ENCORE_TEST_SECRET", "four");
    let params = [("what".to_string(), ParamValue::Text("env".into())), ("target".to_string(), ParamValue::Text("ENCORE_TEST_SECRET".into()))];
    let err = extract_error("hostile-io", tight(), &params).unwrap_err();
    match err.trap_kind() {
        Some(TrapKind::CapabilityDenied(import)) => {
            assert!(import.starts_with("wasi:cli/environment@") && import.ends_with("#get-environment"), "{import}")
        }
        _ => panic!("expected CapabilityDenied, got {err}"),
    }
    // Granted explicitly, the plugin sees that variable (and only it).
    let granted = SandboxConfig { grants: Grants { env: vec!["ENCORE_TEST_SECRET".into()], clock: false }, ..tight() };
    let out = extract_error("hostile-io", granted, &params).unwrap();
    assert_eq!(out, vec![Some(vec![4.0])]);
}

#[test]
fn reading_the_clock_is_denied_unless_granted() {
    let params = [("what".to_string(), ParamValue::Text("clock".into()))];
    let err = extract_error("hostile-io", tight(), &params).unwrap_err();
    match err.trap_kind() {
        Some(TrapKind::CapabilityDenied(import)) => assert!(import.starts_with("wasi:clocks/wall-clock@"), "{import}"),
        _ => panic!("expected CapabilityDenied, got {err}"),
    }
    let granted = SandboxConfig { grants: Grants { env: vec![], clock: true }, ..tight() };
    assert_eq!(extract_error("hostile-io", granted, &params).unwrap(), vec![Some(vec![1.0])]);
}

#[test]
fn std_hash_maps_work_without_grants() {
    // HashMap's RandomState asks wasi:random/insecure-seed; the host answers with a fixed seed.
    let params = [("what".to_string(), ParamValue::Text("hashmap".into()))];
    assert_eq!(extract_error("hostile-io", tight(), &params).unwrap(), vec![Some(vec![81.0])]);
}

#[test]
fn a_vector_longer_than_the_spec_is_an_invalid_result() {
    let err = extract_error("hostile-shape", tight(), &[]).unwrap_err();
    assert!(matches!(&err, PluginError::InvalidResult { reason, .. } if reason.contains("vector of length 5, but the spec says 4")), "{err}");
}

#[test]
fn a_plan_with_a_dangling_node_is_an_invalid_result() {
    let plugin = common::runtime(tight()).load(&common::plugin_file("hostile-plan")).unwrap();
    let inputs = [fusion::Modality { name: "id".into(), dim: 8 }];
    let err = fusion::plan(&plugin, &inputs, 8, &[]).unwrap_err();
    assert!(matches!(&err, PluginError::InvalidResult { reason, .. } if reason.contains("refers to node 99")), "{err}");
}

#[test]
fn the_cli_fails_cleanly_and_writes_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let rankings = dir.path().join("rankings.parquet");
    encore::eval::rankings::write(&rankings, &["u1".into()], &[vec![1, 2, 3]], &[vec![2]], 10).unwrap();
    let out_file = dir.path().join("results.parquet");
    for hostile in ["hostile-panic", "hostile-loop", "hostile-alloc", "hostile-nan", "hostile-short", "hostile-api"] {
        let out = common::encore()
            .args(["--memory-mib", "64", "--fuel", "100000000", "eval", "--rankings"])
            .arg(&rankings)
            .args(["--metrics", &format!("recall,{hostile}"), "--out"])
            .arg(&out_file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{hostile}: {stderr}");
        assert!(stderr.contains(&format!("`{hostile}`")), "{hostile}: {stderr}");
        assert!(!stderr.contains("panicked at") || hostile == "hostile-panic", "the host panicked: {stderr}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("rankings.parquet")], "{hostile} left files behind");
    }
}
