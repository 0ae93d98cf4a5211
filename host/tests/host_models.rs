//! Host models (`host-models`): the BERT sentence encoder and the EnCodec audio encoder on tiny
//! random-weight folders the tests write, then the `lyrics`, `meta-text` and `audio-net`
//! extractor plugins calling them through the real sandbox.
mod common;
#[path = "common/tiny_models.rs"]
mod tiny_models;

use encore::hostmodels::{ModelError, ModelRegistry};
use encore::plugins::extractor::ExtractorInstance;
use encore::plugins::{GuestError, ParamValue, PluginError, SandboxConfig, Track};
use std::path::PathBuf;
use std::sync::OnceLock;
use tiny_models::*;

/// The two folders (BERT, EnCodec), written once per test binary.
fn folders() -> (&'static PathBuf, &'static PathBuf) {
    static DIRS: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let d = DIRS.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let (bert, encodec) = (tmp.path().join("bert"), tmp.path().join("encodec"));
        write_bert(&bert);
        write_encodec(&encodec);
        (tmp, bert, encodec)
    });
    (&d.1, &d.2)
}

fn registry() -> ModelRegistry {
    let (bert, encodec) = folders();
    ModelRegistry::new().env_fallback(false).with("all-minilm-l6-v2", bert).with("encodec-24khz", encodec)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn norm(a: &[f32]) -> f32 {
    a.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn text_embeddings_are_unit_deterministic_and_independent_of_batch_padding() {
    let r = registry();
    let long = ["the quiet piano ballad"; 10].join(" "); // 40 words: truncated to 16 tokens
    let texts = strings(&["the quiet piano ballad", "loud guitar , drums !", "hello", "", &long, "Rock  JAZZ"]);
    let info = r.describe("all-minilm-l6-v2").unwrap();
    assert_eq!((info.dim, info.sample_rate, info.architecture.as_str()), (BERT_DIM, None, "bert"));
    let a = r.embed_text("all-minilm-l6-v2", &texts).unwrap();
    assert_eq!(a.len(), texts.len());
    for v in &a {
        assert_eq!(v.len(), BERT_DIM);
        assert!(v.iter().all(|x| x.is_finite()));
        assert!((norm(v) - 1.0).abs() < 1e-5, "not L2-normalised: {}", norm(v));
    }
    assert_eq!(a, r.embed_text("all-minilm-l6-v2", &texts).unwrap(), "not deterministic");
    // Alone (no padding) and in a batch with longer texts (padded): the mask must make them equal.
    for (t, v) in texts.iter().zip(&a) {
        let alone = r.embed_text("all-minilm-l6-v2", std::slice::from_ref(t)).unwrap();
        assert!(max_diff(&alone[0], v) < 1e-5, "{t:?}: padding changed the vector by {}", max_diff(&alone[0], v));
    }
    // Distinct texts give distinct vectors; case is normalised away by the uncased tokenizer.
    assert!(max_diff(&a[0], &a[1]) > 1e-2 && max_diff(&a[0], &a[2]) > 1e-2);
    let lower = r.embed_text("all-minilm-l6-v2", &strings(&["rock jazz"])).unwrap();
    assert!(max_diff(&lower[0], &a[5]) < 1e-6);
    // Truncation at max_seq_length = 16 tokens: [CLS] + 14 words + [SEP].
    let first14 = long.split(' ').take(14).collect::<Vec<_>>().join(" ");
    let cut = r.embed_text("all-minilm-l6-v2", &[first14]).unwrap();
    assert!(max_diff(&cut[0], &a[4]) < 1e-5, "the long text was not truncated at 16 tokens");
}

#[test]
fn audio_embeddings_have_the_model_width_are_deterministic_and_tell_inputs_apart() {
    let r = registry();
    let info = r.describe("encodec-24khz").unwrap();
    assert_eq!((info.dim, info.sample_rate, info.architecture.as_str()), (ENCODEC_DIM, Some(ENCODEC_RATE), "encodec"));
    let clips = vec![sine(440.0, 0.5, ENCODEC_RATE), noise(4000, 3), sine(110.0, 1.0, ENCODEC_RATE)];
    let a = r.embed_audio("encodec-24khz", &clips, ENCODEC_RATE).unwrap();
    assert_eq!(a.len(), 3);
    for v in &a {
        assert_eq!(v.len(), ENCODEC_DIM);
        assert!(v.iter().all(|x| x.is_finite()));
    }
    assert_eq!(a, r.embed_audio("encodec-24khz", &clips, ENCODEC_RATE).unwrap(), "not deterministic");
    let d = [max_diff(&a[0], &a[1]), max_diff(&a[0], &a[2]), max_diff(&a[1], &a[2])];
    assert!(d.iter().all(|&d| d > 1e-3), "different clips, near-equal vectors: max differences {d:?}");
    let one = r.embed_audio("encodec-24khz", &clips[1..2], ENCODEC_RATE).unwrap();
    assert_eq!(one[0], a[1], "a clip's vector depends on the other clips of the call");
}

#[test]
fn model_errors_name_the_model_and_what_to_do() {
    let r = registry();
    let e = r.embed_text("nope", &strings(&["x"])).unwrap_err();
    assert!(matches!(e, ModelError::Unknown { .. }));
    let m = e.to_string();
    assert!(m.contains("model `nope`") && m.contains("[models.nope] path") && m.contains("ENCORE_MODEL_NOPE"), "{m}");

    let e = r.embed_audio("all-minilm-l6-v2", &[sine(440.0, 0.5, 8000)], 8000).unwrap_err().to_string();
    assert!(e.contains("`all-minilm-l6-v2` is a text model") && e.contains("embed-text"), "{e}");
    let e = r.embed_text("encodec-24khz", &strings(&["x"])).unwrap_err().to_string();
    assert!(e.contains("audio model") && e.contains("embed-audio"), "{e}");
    let e = r.embed_audio("encodec-24khz", &[sine(440.0, 0.5, 16000)], 16000).unwrap_err().to_string();
    assert!(e.contains("16000 Hz") && e.contains("8000 Hz"), "{e}");
    let e = r.embed_audio("encodec-24khz", &[vec![0.1; 3]], ENCODEC_RATE).unwrap_err().to_string();
    assert!(e.contains("clip 0 has 3 samples"), "{e}");
    let e = r.embed_audio("encodec-24khz", &[vec![f32::NAN; 800]], ENCODEC_RATE).unwrap_err().to_string();
    assert!(e.contains("non-finite"), "{e}");

    // A broken folder: the error names the file.
    let tmp = tempfile::tempdir().unwrap();
    write_bert(tmp.path());
    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    let e = ModelRegistry::new().with("broken", tmp.path()).describe("broken").unwrap_err().to_string();
    assert!(e.contains("model `broken`") && e.contains("tokenizer.json"), "{e}");
    std::fs::write(tmp.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let e = ModelRegistry::new().with("broken", tmp.path()).describe("broken").unwrap_err().to_string();
    assert!(e.contains("\"gpt2\" is not supported"), "{e}");
}

#[test]
fn names_resolve_from_the_config_table_and_the_environment() {
    let (bert, _) = folders();
    let table: encore::hostmodels::ModelsConfig = toml::from_str(&format!("[minilm]\npath = {:?}\n", bert.display().to_string())).unwrap();
    let r = ModelRegistry::from_config(&table, std::path::Path::new("/elsewhere"));
    assert_eq!(r.describe("minilm").unwrap().dim, BERT_DIM);
    let typo: Result<encore::hostmodels::ModelsConfig, _> = toml::from_str("[minilm]\npaht = \"x\"\n");
    assert!(typo.unwrap_err().to_string().contains("paht"));
    // Only this test sets this variable.
    unsafe { std::env::set_var("ENCORE_MODEL_TINY_BERT_ENV", bert) };
    assert_eq!(ModelRegistry::new().describe("tiny-bert.env").unwrap().dim, BERT_DIM);
    assert!(ModelRegistry::new().env_fallback(false).describe("tiny-bert.env").is_err());
    assert_eq!(encore::hostmodels::parse_model_flag("m=/a/b").unwrap(), ("m".to_string(), PathBuf::from("/a/b")));
    assert!(encore::hostmodels::parse_model_flag("/a/b").is_err());
}

// ---- the plugins, through the sandbox ----

fn extractor(name: &str, params: &[(String, ParamValue)], cfg: SandboxConfig) -> Result<ExtractorInstance, PluginError> {
    let runtime = common::runtime(cfg).with_models(registry());
    let plugin = runtime.load(&common::plugin_file(name)).unwrap();
    ExtractorInstance::new(&plugin, params)
}

fn with_text(i: u32, artist: &str, title: &str, tags: &[&str], lyrics: Option<&str>) -> Track {
    Track { artist: artist.into(), title: title.into(), tags: strings(tags), lyrics: lyrics.map(String::from), ..common::track(i) }
}

#[test]
fn lyrics_embeds_the_lyrics_and_reports_tracks_without_them_missing() {
    let mut x = extractor("lyrics", &[], SandboxConfig::default()).unwrap();
    assert_eq!((x.spec().name.as_str(), x.spec().dim, x.spec().wants_audio), ("lyrics", BERT_DIM, None));
    let tracks = [
        with_text(0, "a", "t", &[], Some("the quiet piano ballad")),
        with_text(1, "a", "t", &[], None),
        with_text(2, "a", "t", &[], Some("  \n ")),
        with_text(3, "a", "t", &[], Some("loud guitar drums")),
    ];
    let out = x.extract(&tracks, &[None, None, None, None]).unwrap();
    assert_eq!(out.iter().map(Option::is_some).collect::<Vec<_>>(), [true, false, false, true]);
    let direct = registry().embed_text("all-minilm-l6-v2", &strings(&["the quiet piano ballad", "loud guitar drums"])).unwrap();
    assert!(max_diff(out[0].as_ref().unwrap(), &direct[0]) < 1e-6);
    assert!(max_diff(out[3].as_ref().unwrap(), &direct[1]) < 1e-6);
    // A batch with no lyrics at all makes no model call and is all missing.
    assert_eq!(x.extract(&tracks[1..3], &[None, None]).unwrap(), vec![None, None]);
}

#[test]
fn meta_text_embeds_artist_title_and_tags() {
    let mut x = extractor("meta-text", &[], SandboxConfig::default()).unwrap();
    assert_eq!((x.spec().name.as_str(), x.spec().dim), ("meta-text", BERT_DIM));
    let tracks =
        [with_text(0, "Artist", "Love Song", &["rock", " jazz "], None), with_text(1, "", "", &[], Some("ignored")), with_text(2, "", "night", &[], None)];
    let out = x.extract(&tracks, &[None, None, None]).unwrap();
    assert_eq!(out.iter().map(Option::is_some).collect::<Vec<_>>(), [true, false, true]);
    let direct = registry().embed_text("all-minilm-l6-v2", &strings(&["Artist - Love Song. Tags: rock, jazz.", "night."])).unwrap();
    assert!(max_diff(out[0].as_ref().unwrap(), &direct[0]) < 1e-6);
    assert!(max_diff(out[2].as_ref().unwrap(), &direct[1]) < 1e-6);

    let mut no_tags = extractor("meta-text", &[("tags".into(), ParamValue::Boolean(false))], SandboxConfig::default()).unwrap();
    let v = no_tags.extract(&tracks[..1], &[None]).unwrap();
    let direct = registry().embed_text("all-minilm-l6-v2", &strings(&["Artist - Love Song."])).unwrap();
    assert!(max_diff(v[0].as_ref().unwrap(), &direct[0]) < 1e-6);
}

#[test]
fn audio_net_asks_for_the_models_rate_and_embeds_the_clips_it_gets() {
    let mut x = extractor("audio-net", &[], SandboxConfig::default()).unwrap();
    assert_eq!((x.spec().name.as_str(), x.spec().dim, x.spec().wants_audio), ("audio-net", ENCODEC_DIM, Some(ENCODEC_RATE)));
    let tracks: Vec<Track> = (0..4).map(common::track).collect();
    let (a, b) = (sine(220.0, 0.5, ENCODEC_RATE), noise(6000, 9));
    let audio = [Some(a.clone()), None, Some(vec![0.2; 100]), Some(b.clone())]; // 100 samples < 0.1 s
    let out = x.extract(&tracks, &audio).unwrap();
    assert_eq!(out.iter().map(Option::is_some).collect::<Vec<_>>(), [true, false, false, true]);
    let direct = registry().embed_audio("encodec-24khz", &[a, b], ENCODEC_RATE).unwrap();
    assert_eq!(out[0].as_ref().unwrap(), &direct[0]);
    assert_eq!(out[3].as_ref().unwrap(), &direct[1]);
}

#[test]
fn plugins_pass_on_model_errors_with_the_plugin_and_model_named() {
    let model = |m: &str| vec![("model".to_string(), ParamValue::Text(m.into()))];
    let err = extractor("lyrics", &model("nope"), SandboxConfig::default()).err().unwrap();
    let m = err.to_string();
    assert!(matches!(&err, PluginError::Returned { error: GuestError::Unsupported(_), .. }), "{m}");
    assert!(m.contains("plugin `lyrics`") && m.contains("model `nope` is not registered") && m.contains("[models.nope]"), "{m}");

    let err = extractor("audio-net", &model("all-minilm-l6-v2"), SandboxConfig::default()).err().unwrap();
    assert!(matches!(&err, PluginError::Returned { error: GuestError::InvalidInput(_), .. }), "{err}");
    assert!(err.to_string().contains("is a text model; audio-net needs an audio model"), "{err}");
    let err = extractor("meta-text", &model("encodec-24khz"), SandboxConfig::default()).err().unwrap();
    assert!(err.to_string().contains("is an audio model"), "{err}");
}

#[test]
fn sandbox_limits_still_apply_to_plugins_that_call_models() {
    // Memory: a batch that cannot fit under the cap is refused before the call.
    let cfg = SandboxConfig { memory_mib: 4, ..SandboxConfig::default() };
    let mut x = extractor("audio-net", &[], cfg).unwrap();
    let err = x.extract(&[common::track(0)], &[Some(noise(1 << 20, 1))]).unwrap_err();
    assert!(matches!(err, PluginError::InputTooLarge { .. }), "{err}");
    // Memory: one that passes the pre-check but not the plugin's own copy traps as out of memory.
    let mut x = extractor("audio-net", &[], SandboxConfig { memory_mib: 4, ..SandboxConfig::default() }).unwrap();
    let clips = vec![Some(noise(200_000, 2)), Some(noise(200_000, 3))];
    let err = x.extract(&[common::track(0), common::track(1)], &clips).unwrap_err();
    assert!(matches!(err.trap_kind(), Some(encore::plugins::TrapKind::OutOfMemory { .. })), "{err}");
}

#[test]
fn only_extractor_plugins_can_call_the_models() {
    // A metric plugin that declares the import loads, but its call is denied by the sandbox even
    // though the runtime has the model.
    let runtime = common::runtime(SandboxConfig::default()).with_models(registry());
    let plugin = runtime.load(&common::plugin_file("hostile-models")).unwrap();
    let err = encore::plugins::metric::MetricInstance::new(&plugin, &[10], 100).err().expect("the call must be denied");
    match err.trap_kind() {
        Some(encore::plugins::TrapKind::CapabilityDenied(import)) => {
            assert_eq!(import, "encore:plugin/host-models@0.1.0#describe")
        }
        _ => panic!("expected a denied capability, got {err}"),
    }
    assert!(err.to_string().contains("`hostile-models`"), "{err}");
}
