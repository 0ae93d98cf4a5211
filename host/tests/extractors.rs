//! Built-in extractor plugins, run in the sandbox.
mod common;

use encore::plugins::extractor::ExtractorInstance;
use encore::plugins::{ParamValue, PluginError, Track};

fn track(mgphot: Option<Vec<f32>>) -> Track {
    Track { duration_s: Some(200.0), mgphot, ..common::track(3) }
}

fn genes() -> Vec<f32> {
    (0..58).map(|i| (i % 11) as f32 / 10.0).collect()
}

fn text(s: &str) -> ParamValue {
    ParamValue::Text(s.into())
}

#[test]
fn mgphot_raw_keeps_the_58_values() {
    let mut x = ExtractorInstance::new(&common::load("mgphot"), &[]).unwrap();
    assert_eq!((x.spec().name.as_str(), x.spec().dim), ("mgphot", 58));
    let out = x.extract(&[track(Some(genes()))], &[None]).unwrap();
    assert_eq!(out[0].as_deref(), Some(&genes()[..]));
}

#[test]
fn mgphot_binned_one_hot_encodes_low_moderate_high_for_chosen_groups() {
    let params = [("mode".into(), text("binned")), ("groups".into(), ParamValue::Texts(vec!["harmony".into()]))];
    let mut x = ExtractorInstance::new(&common::load("mgphot"), &params).unwrap();
    assert_eq!(x.spec().dim, 6, "2 harmony genes × 3 bins");
    let mut g = vec![0.5; 58];
    g[7] = 0.2; // Low
    g[8] = 0.9; // High
    let out = x.extract(&[track(Some(g))], &[None]).unwrap();
    assert_eq!(out[0].as_deref(), Some(&[1.0, 0.0, 0.0, 0.0, 0.0, 1.0][..]));
}

#[test]
fn mgphot_reports_missing_and_malformed_annotations_as_missing() {
    let mut x = ExtractorInstance::new(&common::load("mgphot"), &[]).unwrap();
    let mut bad = genes();
    bad[4] = 1.5;
    let out = x.extract(&[track(None), track(Some(vec![0.5; 57])), track(Some(bad)), track(Some(genes()))], &[None, None, None, None]).unwrap();
    assert_eq!(out.iter().map(Option::is_some).collect::<Vec<_>>(), [false, false, false, true]);
}

#[test]
fn mgphot_refuses_unknown_parameters_and_groups() {
    for params in [vec![("mood".to_string(), text("x"))], vec![("groups".to_string(), ParamValue::Texts(vec!["timbre".into()]))]] {
        let err = ExtractorInstance::new(&common::load("mgphot"), &params).err().unwrap();
        assert!(matches!(err, PluginError::Returned { .. }), "{err}");
        assert!(err.to_string().contains("`mgphot`"), "{err}");
    }
}
