//! A BERT-family sentence encoder, as sentence-transformers runs it: Sentence-BERT (Reimers &
//! Gurevych, EMNLP 2019) over BERT (Devlin et al., NAACL 2019). Token states are mean-pooled over
//! the attention mask, then L2-normalised when the folder's `modules.json` lists a `Normalize`
//! module (or has no `modules.json`).
//!
//! Loads an HF folder: `config.json` (`model_type = "bert"`), `model.safetensors`, `tokenizer.json`
//! and, when present, `sentence_bert_config.json` (its `max_seq_length`, e.g. 256 for
//! all-MiniLM-L6-v2, overrides the 128 that the model's own `tokenizer.json` truncates at) and
//! `1_Pooling/config.json` (only mean pooling is accepted). The transformer is candle-transformers'
//! `BertModel`, which applies the padding mask inside attention; pooling is done here.
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

/// Texts per forward pass. Texts are sorted by length first, so padding stays small.
const BATCH: usize = 32;

/// A loaded sentence encoder.
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
    max_len: usize,
    pad_id: u32,
    normalize: bool,
    device: Device,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
}

impl SentenceEncoder {
    /// Loads the folder `dir`. Errors name the file at fault.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, String> {
        let config: Config = read_json(&dir.join("config.json"))?;
        if let Some(t) = config.model_type.as_deref().filter(|t| *t != "bert") {
            return Err(format!("config.json: model_type {t:?} is not a BERT model (`bert`)"));
        }
        let mut max_len = config.max_position_embeddings;
        let st = dir.join("sentence_bert_config.json");
        if st.exists() {
            if let Some(n) = read_json::<SentenceBertConfig>(&st)?.max_seq_length {
                max_len = n.min(max_len);
            }
        }
        let pooling = dir.join("1_Pooling/config.json");
        if pooling.exists() && !read_json::<PoolingConfig>(&pooling)?.pooling_mode_mean_tokens {
            return Err(format!("{}: only mean pooling is supported", pooling.display()));
        }
        let modules = dir.join("modules.json");
        let normalize = !modules.exists() || read_json::<Vec<Module>>(&modules)?.iter().any(|m| m.kind.ends_with("models.Normalize"));

        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(format!("{} is missing (an HF folder holds config.json, model.safetensors and tokenizer.json)", weights.display()));
        }
        // SAFETY: the weights are memory-mapped read-only; like every safetensors loader we assume
        // nobody truncates the file while the model is loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }.map_err(|e| format!("reading {}: {e}", weights.display()))?;
        let model = BertModel::load(vb, &config).map_err(|e| format!("loading the weights of {}: {e}", weights.display()))?;

        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| format!("reading {}: {e}", tok_path.display()))?;
        let pad_id = tokenizer.get_padding().map_or(config.pad_token_id as u32, |p| p.pad_id);
        // Pooling masks padding, so we pad per batch ourselves; truncation follows sentence-transformers.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() })).map_err(|e| format!("{}: {e}", tok_path.display()))?;
        Ok(SentenceEncoder { model, tokenizer, dim: config.hidden_size, max_len, pad_id, normalize, device: device.clone() })
    }

    /// Width of every embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Tokens per text after truncation (including the special tokens).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// One embedding per text, in order.
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| format!("tokenizing: {e}"))?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| enc[i].get_ids().len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let width = chunk.iter().map(|&i| enc[i].get_ids().len()).max().unwrap_or(1).max(1);
            let (mut ids, mut mask) = (Vec::with_capacity(chunk.len() * width), Vec::with_capacity(chunk.len() * width));
            for &i in chunk {
                let t = enc[i].get_ids();
                ids.extend_from_slice(t);
                ids.extend(std::iter::repeat_n(self.pad_id, width - t.len()));
                mask.extend(std::iter::repeat_n(1u32, t.len()).chain(std::iter::repeat_n(0, width - t.len())));
            }
            let vecs = self.forward(ids, mask, chunk.len(), width).map_err(|e| format!("running the model: {e}"))?;
            for (&i, v) in chunk.iter().zip(vecs) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn forward(&self, ids: Vec<u32>, mask: Vec<u32>, b: usize, l: usize) -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = Tensor::from_vec(ids, (b, l), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, l), &self.device)?;
        let hidden = self.model.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
        // Mean over real tokens: sum(h · m) / max(sum(m), 1e-9), as sentence-transformers' Pooling.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
        let sum = hidden.broadcast_mul(&m)?.sum(1)?;
        let mut pooled = sum.broadcast_div(&m.sum(1)?.clamp(1e-9f32, f32::MAX)?)?;
        if self.normalize {
            // torch.nn.functional.normalize: x / max(‖x‖, 1e-12).
            let norm = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
            pooled = pooled.broadcast_div(&norm)?;
        }
        pooled.to_vec2()
    }
}
