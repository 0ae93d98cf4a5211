//! The LLaMA decoder (Touvron et al., "LLaMA: Open and Efficient Foundation Language Models",
//! 2023; "Llama 2", 2023; "The Llama 3 Herd of Models", 2024), as Hugging Face transformers'
//! `LlamaModel` computes it: pre-norm blocks of RMS norm, grouped-query self-attention with
//! rotary position embeddings (rotate-half layout; Llama 3's frequency scaling), and a SwiGLU
//! feed-forward; a final RMS norm. Model cards: meta-llama/Llama-2-7b-hf,
//! meta-llama/Meta-Llama-3-8B, HuggingFaceTB/SmolLM2-135M-Instruct (llama architecture, 30 blocks,
//! hidden 576, 9 query / 3 key-value heads, tied embeddings). Qwen2 is this decoder with biases on
//! the query, key and value projections (`qwen2.rs`).
//!
//! Unlike candle-transformers' llama, it takes input *embeddings* (E4SRec feeds projected item
//! vectors between text tokens), returns the hidden state at every position, takes a padding mask
//! combined with the causal one, and routes every projection through a [`LoraLinear`]. Weight
//! names are HF's (`model.layers.N.self_attn.q_proj.weight`, …).
//!
//! Two kinds of kernels: [`Mode::Train`] uses only candle ops with a backward (softmax from exp /
//! sum / div, `rms_norm_slow`, `rope_slow`; candle 0.11's fused kernels drop gradients silently);
//! [`Mode::Infer`] uses the fused kernels, which are faster and give the same values.
use super::lora::{LoraConfig, LoraLinear};
use super::weights::Weights;
use super::{LlmError, Result};
use crate::models::TrainCtx;
use candle_core::{DType, Device, Tensor, D};
use serde::Deserialize;

/// Llama 3's rotary frequency scaling (`rope_scaling` with `rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeScaling {
    /// `llama3` (or `linear`); anything else is refused when the model is built.
    #[serde(alias = "type")]
    pub rope_type: String,
    /// Divides the low frequencies.
    pub factor: f64,
    /// llama3: wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled.
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    /// llama3: wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    /// llama3: the context the model was pretrained with.
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn rope_theta_default() -> f64 {
    10_000.0
}
fn eps_default() -> f64 {
    1e-6
}
fn max_pos_default() -> usize {
    2048
}

/// A decoder's hyperparameters: HF's `config.json` keys (other keys are ignored, as
/// transformers ignores them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LlamaConfig {
    /// Hidden size.
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Transformer blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); default: as many as query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; default `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// RMS norm epsilon.
    #[serde(default = "eps_default")]
    pub rms_norm_eps: f64,
    /// Rotary base.
    #[serde(default = "rope_theta_default")]
    pub rope_theta: f64,
    /// Rotary frequency scaling (Llama 3).
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// Longest context.
    #[serde(default = "max_pos_default")]
    pub max_position_embeddings: usize,
    /// Whether the output head is the input embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on the query, key and value projections (Qwen2: true).
    #[serde(default)]
    pub attention_bias: bool,
    /// `silu` is the only activation supported.
    #[serde(default)]
    pub hidden_act: Option<String>,
}

impl LlamaConfig {
    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Refuses what this decoder cannot run, naming the key.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(LlmError::Config(m));
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.num_hidden_layers == 0 || self.vocab_size == 0 || self.intermediate_size == 0 {
            return bad("hidden_size, intermediate_size, num_hidden_layers, num_attention_heads and vocab_size must be positive".into());
        }
        if self.kv_heads() == 0 || !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return bad(format!("num_attention_heads {} is not a multiple of num_key_value_heads {}", self.num_attention_heads, self.kv_heads()));
        }
        if self.head_dim() == 0 || !self.head_dim().is_multiple_of(2) {
            return bad(format!("head_dim {} must be even and positive", self.head_dim()));
        }
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return bad(format!("hidden_act {act:?} is not supported (only \"silu\")"));
            }
        }
        if let Some(s) = &self.rope_scaling {
            if !matches!(s.rope_type.as_str(), "llama3" | "linear" | "default") {
                return bad(format!("rope_scaling type {:?} is not supported (llama3, linear)", s.rope_type));
            }
            if !(s.factor > 0.0) {
                return bad(format!("rope_scaling factor {} must be positive", s.factor));
            }
        }
        Ok(())
    }

    /// The rotary inverse frequencies, with the configured scaling (transformers'
    /// `_compute_llama3_parameters` for llama3).
    pub fn inv_freq(&self) -> Vec<f64> {
        let hd = self.head_dim();
        let base: Vec<f64> = (0..hd / 2).map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / hd as f64)).collect();
        let Some(s) = &self.rope_scaling else { return base };
        match s.rope_type.as_str() {
            "linear" => base.iter().map(|f| f / s.factor).collect(),
            "llama3" => {
                let old = s.original_max_position_embeddings.unwrap_or(8192) as f64;
                let (low_wl, high_wl) = (old / s.low_freq_factor, old / s.high_freq_factor);
                base.iter()
                    .map(|&f| {
                        let wl = 2.0 * std::f64::consts::PI / f;
                        if wl < high_wl {
                            f
                        } else if wl > low_wl {
                            f / s.factor
                        } else {
                            let smooth = (old / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                            (1.0 - smooth) * f / s.factor + smooth * f
                        }
                    })
                    .collect()
            }
            _ => base,
        }
    }
}

/// Which kernels a forward pass uses.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    /// Ops with a backward; dropout (of LoRA inputs) from the context.
    Train(&'a TrainCtx),
    /// Fused kernels, no dropout.
    Infer,
}

impl<'a> Mode<'a> {
    fn ctx(&self) -> Option<&'a TrainCtx> {
        match self {
            Mode::Train(c) => Some(c),
            Mode::Infer => None,
        }
    }
}

struct Block {
    input_norm: Tensor,
    q: LoraLinear,
    k: LoraLinear,
    v: LoraLinear,
    o: LoraLinear,
    post_norm: Tensor,
    gate: LoraLinear,
    up: LoraLinear,
    down: LoraLinear,
}

/// Keys and values of earlier positions, per block, each `(batch, kv_heads, positions,
/// head_dim)` with rotary embeddings applied. A batch of 1 is broadcast over any batch.
#[derive(Clone, Default)]
pub struct KvCache {
    /// Per block.
    pub layers: Vec<(Tensor, Tensor)>,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.dims()[2])
    }
    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The decoder, its token embedding and (for language-model logits) its output head.
pub struct Llama {
    cfg: LlamaConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

impl Llama {
    /// Builds the model from `w` (HF names), with LoRA adapters on `lora`'s target modules.
    /// `lora_vars` receives each adapter's trainable tensors by PEFT name.
    pub fn load(cfg: LlamaConfig, w: &mut dyn Weights, lora: Option<&LoraConfig>, lora_vars: &mut crate::models::Params) -> Result<Self> {
        cfg.check()?;
        let device = w.device().clone();
        let (h, hd, nh, nkv, inter) = (cfg.hidden_size, cfg.head_dim(), cfg.num_attention_heads, cfg.kv_heads(), cfg.intermediate_size);
        let embed = w.get("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut lin = |module: &str, part: &str, d_in: usize, d_out: usize, bias: bool| -> Result<LoraLinear> {
                let name = format!("{p}.{part}.{module}");
                let weight = w.get_linear(&format!("{name}.weight"), &[d_out, d_in])?;
                let b = if bias { Some(w.get(&format!("{name}.bias"), &[d_out])?) } else { None };
                LoraLinear::new(weight, b, &name, module, d_in, lora, lora_vars)
            };
            let bias = cfg.attention_bias;
            blocks.push(Block {
                q: lin("q_proj", "self_attn", h, nh * hd, bias)?,
                k: lin("k_proj", "self_attn", h, nkv * hd, bias)?,
                v: lin("v_proj", "self_attn", h, nkv * hd, bias)?,
                o: lin("o_proj", "self_attn", nh * hd, h, false)?,
                gate: lin("gate_proj", "mlp", h, inter, false)?,
                up: lin("up_proj", "mlp", h, inter, false)?,
                down: lin("down_proj", "mlp", inter, h, false)?,
                input_norm: w.get(&format!("{p}.input_layernorm.weight"), &[h])?,
                post_norm: w.get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
            });
        }
        let norm = w.get("model.norm.weight", &[h])?;
        let lm_head = if cfg.tie_word_embeddings { None } else { w.get_optional("lm_head.weight", &[cfg.vocab_size, h])? };
        let inv: Vec<f32> = cfg.inv_freq().into_iter().map(|f| f as f32).collect();
        let ctx = cfg.max_position_embeddings.clamp(1, 1 << 17);
        let pos = Tensor::arange(0u32, ctx as u32, &device)?.to_dtype(DType::F32)?.reshape((ctx, 1))?;
        let freqs = pos.matmul(&Tensor::from_vec(inv, (1, hd / 2), &device)?)?;
        Ok(Llama { cos: freqs.cos()?, sin: freqs.sin()?, cfg, embed, blocks, norm, lm_head, device })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }
    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Embeddings of token ids (`B × T` → `B × T × hidden`).
    pub fn embed_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        Ok(self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, self.cfg.hidden_size))?)
    }

    /// Language-model logits of hidden states (`… × hidden` → `… × vocab`).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        let dims = hidden.dims().to_vec();
        let h = *dims.last().unwrap_or(&0);
        let y = hidden.reshape((hidden.elem_count() / h.max(1), h))?.matmul(&head.t()?)?;
        let mut out = dims;
        if let Some(l) = out.last_mut() {
            *l = head.dims()[0];
        }
        Ok(y.reshape(out)?)
    }

    /// Runs `x` (`B × T × hidden` input embeddings) after the positions `past` holds. `keys`
    /// (`B × (past + T)`, 1 for a real token, 0 for padding) masks keys on top of the causal mask;
    /// position ids are `past.len()..past.len() + T`, padding included (what transformers does
    /// when no `position_ids` are given, as E4SRec calls it). Returns the final-normed hidden
    /// state at every position and the cache extended by these positions.
    pub fn forward(&self, x: &Tensor, keys: &Tensor, past: Option<&KvCache>, mode: Mode) -> Result<(Tensor, KvCache)> {
        self.run(x, keys, past, mode, true)
    }

    /// [`Llama::forward`] without building the extended cache: each block's keys and values are
    /// dropped as soon as the block is done (a batch of 512 rows holds 1.5 GB of them for
    /// SmolLM2 otherwise).
    pub fn hidden(&self, x: &Tensor, keys: &Tensor, past: Option<&KvCache>, mode: Mode) -> Result<Tensor> {
        Ok(self.run(x, keys, past, mode, false)?.0)
    }

    fn run(&self, x: &Tensor, keys: &Tensor, past: Option<&KvCache>, mode: Mode, keep_cache: bool) -> Result<(Tensor, KvCache)> {
        let (b, t, _) = x.dims3()?;
        let start = past.map_or(0, |c| c.len());
        let total = start + t;
        if total > self.cos.dims()[0] {
            return Err(LlmError::Input(format!("{total} positions exceed the model's context of {}", self.cos.dims()[0])));
        }
        if keys.dims() != [b, total] {
            return Err(LlmError::Input(format!("key mask has shape {:?}, expected [{b}, {total}]", keys.dims())));
        }
        let (nh, nkv, hd) = (self.cfg.num_attention_heads, self.cfg.kv_heads(), self.cfg.head_dim());
        let rep = nh / nkv;
        let eps = self.cfg.rms_norm_eps as f32;
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        let mask = additive_mask(keys, start, t)?; // B × 1 × 1 × T × total
        let ctx = mode.ctx();
        let norm = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
            Ok(match mode {
                Mode::Train(_) => candle_nn::ops::rms_norm_slow(x, w, eps)?,
                Mode::Infer => candle_nn::ops::rms_norm(&x.contiguous()?, w, eps)?,
            })
        };
        let rope = |x: &Tensor| -> Result<Tensor> {
            Ok(match mode {
                Mode::Train(_) => candle_nn::rotary_emb::rope_slow(x, &cos, &sin)?,
                Mode::Infer => candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)?,
            })
        };
        let mut x = x.clone();
        let mut cache = KvCache { layers: Vec::with_capacity(self.blocks.len()) };
        for (i, blk) in self.blocks.iter().enumerate() {
            let a = norm(&x, &blk.input_norm)?;
            let q = blk.q.forward(&a, ctx)?.reshape((b, t, nh, hd))?.transpose(1, 2)?;
            let k = blk.k.forward(&a, ctx)?.reshape((b, t, nkv, hd))?.transpose(1, 2)?;
            let v = blk.v.forward(&a, ctx)?.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let q = rope(&q)?.contiguous()?;
            let k = rope(&k)?.contiguous()?;
            let (k, v) = match past.and_then(|p| p.layers.get(i)) {
                Some((pk, pv)) => {
                    let pk = if pk.dims()[0] == b { pk.clone() } else { pk.broadcast_as((b, nkv, start, hd))?.contiguous()? };
                    let pv = if pv.dims()[0] == b { pv.clone() } else { pv.broadcast_as((b, nkv, start, hd))?.contiguous()? };
                    (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?)
                }
                None => (k, v),
            };
            if keep_cache {
                cache.layers.push((k.clone(), v.clone()));
            }
            // Grouped-query attention without repeating keys: each key/value head's `rep` query
            // heads are stacked along the query axis.
            let q = q.reshape((b, nkv, rep * t, hd))?;
            let att = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
            let att = att.reshape((b, nkv, rep, t, total))?.broadcast_add(&mask)?;
            let att = match mode {
                Mode::Train(_) => candle_nn::ops::softmax(&att, D::Minus1)?,
                Mode::Infer => candle_nn::ops::softmax_last_dim(&att)?,
            };
            let y = att.reshape((b, nkv, rep * t, total))?.matmul(&v)?;
            let y = y.reshape((b, nh, t, hd))?.transpose(1, 2)?.reshape((b, t, nh * hd))?;
            x = (x + blk.o.forward(&y, ctx)?)?;
            let a = norm(&x, &blk.post_norm)?;
            let ff = blk.down.forward(&(candle_nn::ops::silu(&blk.gate.forward(&a, ctx)?)? * blk.up.forward(&a, ctx)?)?, ctx)?;
            x = (x + ff)?;
        }
        Ok((norm(&x, &self.norm)?, cache))
    }

    /// Every LoRA adapter of the model, by module path (`model.layers.0.self_attn.q_proj`).
    pub fn adapters(&self) -> Vec<&LoraLinear> {
        self.blocks.iter().flat_map(|b| [&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down]).filter(|l| l.has_lora()).collect()
    }
}

/// A decoder with its cache, for generation one prompt at a time (MGPHot annotation): each
/// [`Session::forward`] runs new tokens after the cached ones and returns the logits at the last.
pub struct Session {
    model: Llama,
    cache: KvCache,
}

impl Session {
    /// An empty cache over `model`.
    pub fn new(model: Llama) -> Self {
        Session { model, cache: KvCache::default() }
    }
    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.model.cfg.vocab_size
    }
    /// A copy of the cache (cheap: tensors are shared).
    pub fn cache(&self) -> KvCache {
        self.cache.clone()
    }
    /// Puts back a cache from [`Session::cache`].
    pub fn restore(&mut self, cache: KvCache) {
        self.cache = cache;
    }
    /// Empties the cache.
    pub fn clear(&mut self) {
        self.cache = KvCache::default();
    }
    /// Runs `tokens` after the cache, appends them to it, and returns the logits (f32,
    /// vocabulary-sized) at the last position.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(LlmError::Input("forward needs at least one token".into()));
        }
        let device = self.model.device.clone();
        let t = tokens.len();
        let x = self.model.embed_ids(&Tensor::from_slice(tokens, (1, t), &device)?)?;
        let past = (!self.cache.is_empty()).then_some(&self.cache);
        let keys = Tensor::ones((1, self.cache.len() + t), DType::F32, &device)?;
        let (h, cache) = self.model.forward(&x, &keys, past, Mode::Infer)?;
        self.cache = cache;
        Ok(self.model.logits(&h.narrow(1, t - 1, 1)?)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
    }
}

/// `B × 1 × 1 × T × total`: 0 where query `i` (at position `start + i`) may attend to key `j`
/// (`j ≤ start + i` and key `j` is real), a large negative number elsewhere. A finite number
/// rather than -inf, so that a padding query whose keys are all masked gets a uniform (and
/// ignored) attention instead of NaN, which would poison gradients.
fn additive_mask(keys: &Tensor, start: usize, t: usize) -> Result<Tensor> {
    let (b, total) = keys.dims2()?;
    let k = keys.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
    let mut m = vec![0f32; b * t * total];
    for (bi, row) in k.iter().enumerate() {
        for i in 0..t {
            for (j, &valid) in row.iter().enumerate() {
                if j > start + i || valid < 0.5 {
                    m[(bi * t + i) * total + j] = -1e9;
                }
            }
        }
    }
    Ok(Tensor::from_vec(m, (b, 1, 1, t, total), keys.device())?)
}
