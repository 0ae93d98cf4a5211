//! Where a decoder's frozen weights come from: an HF folder (`model.safetensors`, or shards listed
//! in `model.safetensors.index.json`, memory-mapped) or a GGUF file (dequantized to f32). Both
//! answer by HF tensor name; every tensor arrives as f32 on the model's device.
use super::{LlmError, Result};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Tensors by HF name.
pub trait Weights {
    /// The device tensors are put on.
    fn device(&self) -> &Device;
    /// The tensor `name`, which must have `shape`.
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let src = self.source();
        self.get_optional(name, shape)?.ok_or_else(|| LlmError::Weights(format!("{src}: tensor {name} is missing")))
    }
    /// The tensor `name` if the file has it.
    fn get_optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>>;
    /// A projection's weight `name` (`out × in`): dense, or kept quantized where the source
    /// is quantized and asked to keep it so.
    fn get_linear(&mut self, name: &str, shape: &[usize]) -> Result<super::lora::Base> {
        Ok(super::lora::Base::Dense(self.get(name, shape)?))
    }
    /// The file or folder, for messages.
    fn source(&self) -> String;
}

fn check_shape(src: &str, name: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if t.dims() != shape {
        return Err(LlmError::Weights(format!("{src}: tensor {name} has shape {:?}, the config implies {shape:?}", t.dims())));
    }
    Ok(())
}

/// An HF folder's safetensors, memory-mapped.
pub struct SafetensorsWeights {
    st: candle_core::safetensors::MmapedSafetensors,
    device: Device,
    dir: PathBuf,
}

impl SafetensorsWeights {
    /// Opens `dir/model.safetensors`, or every shard that `dir/model.safetensors.index.json`
    /// names (a missing shard is an error naming it).
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|e| LlmError::Weights(format!("reading {}: {e}", index.display())))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| LlmError::Weights(format!("{}: {e}", index.display())))?;
            let map =
                v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| LlmError::Weights(format!("{} has no `weight_map` object", index.display())))?;
            let shards: BTreeSet<&str> = map.values().filter_map(|s| s.as_str()).collect();
            let mut files = Vec::new();
            for s in shards {
                let p = dir.join(s);
                if s.contains('/') || s.contains("..") || !p.is_file() {
                    return Err(LlmError::Weights(format!("{} names shard {s}, which is not in {}", index.display(), dir.display())));
                }
                files.push(p);
            }
            files
        } else {
            let p = dir.join("model.safetensors");
            if !p.is_file() {
                return Err(LlmError::Weights(format!("{} has neither model.safetensors nor model.safetensors.index.json", dir.display())));
            }
            vec![p]
        };
        // SAFETY: the files are mapped read-only; encore never writes them while a model is loaded.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }.map_err(|e| LlmError::Weights(format!("{}: {e}", dir.display())))?;
        Ok(SafetensorsWeights { st, device: device.clone(), dir: dir.to_path_buf() })
    }
}

impl Weights for SafetensorsWeights {
    fn device(&self) -> &Device {
        &self.device
    }
    fn source(&self) -> String {
        self.dir.display().to_string()
    }
    fn get_optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.st.get(name).is_err() {
            return Ok(None);
        }
        let t = self.st.load(name, &self.device).map_err(|e| LlmError::Weights(format!("{}: tensor {name}: {e}", self.source())))?.to_dtype(DType::F32)?;
        check_shape(&self.source(), name, &t, shape)?;
        Ok(Some(t))
    }
}

/// A GGUF file (llama.cpp names), dequantized tensor by tensor.
pub struct GgufWeights {
    content: gguf_file::Content,
    file: std::fs::File,
    path: PathBuf,
    device: Device,
    /// llama.cpp stores a llama's query and key rows permuted for its interleaved rotary
    /// embedding; they are permuted back to HF's layout. (heads, kv_heads)
    unpermute: Option<(usize, usize)>,
    /// Keep quantized projection weights quantized (inference only).
    pub keep_quantized: bool,
}

impl GgufWeights {
    /// Reads the header of `path`.
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| LlmError::Weights(format!("opening {}: {e}", path.display())))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| LlmError::Weights(format!("{} is not a readable GGUF file: {e}", path.display())))?;
        Ok(GgufWeights { content, file, path: path.to_path_buf(), device: device.clone(), unpermute: None, keep_quantized: false })
    }

    /// The header (metadata and tensor index).
    pub fn content(&self) -> &gguf_file::Content {
        &self.content
    }

    fn gguf_name(name: &str) -> Option<String> {
        let map = |s: &str| -> Option<&'static str> {
            Some(match s {
                "self_attn.q_proj" => "attn_q",
                "self_attn.k_proj" => "attn_k",
                "self_attn.v_proj" => "attn_v",
                "self_attn.o_proj" => "attn_output",
                "mlp.gate_proj" => "ffn_gate",
                "mlp.up_proj" => "ffn_up",
                "mlp.down_proj" => "ffn_down",
                "input_layernorm" => "attn_norm",
                "post_attention_layernorm" => "ffn_norm",
                _ => return None,
            })
        };
        match name {
            "model.embed_tokens.weight" => Some("token_embd.weight".into()),
            "model.norm.weight" => Some("output_norm.weight".into()),
            "lm_head.weight" => Some("output.weight".into()),
            _ => {
                let rest = name.strip_prefix("model.layers.")?;
                let (i, rest) = rest.split_once('.')?;
                let (module, kind) = rest.rsplit_once('.')?;
                Some(format!("blk.{i}.{}.{kind}", map(module)?))
            }
        }
    }
}

impl GgufWeights {
    /// The heads whose rows of `g` are permuted (query and key projections of a llama).
    fn permuted_heads(&self, g: &str) -> Option<usize> {
        let (nh, nkv) = self.unpermute?;
        if g.ends_with("attn_q.weight") {
            Some(nh)
        } else if g.ends_with("attn_k.weight") {
            Some(nkv)
        } else {
            None
        }
    }
}

impl Weights for GgufWeights {
    fn device(&self) -> &Device {
        &self.device
    }
    fn get_linear(&mut self, name: &str, shape: &[usize]) -> Result<super::lora::Base> {
        use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul};
        let g = Self::gguf_name(name).filter(|g| self.content.tensor_infos.contains_key(g));
        let Some(g) = g.filter(|_| self.keep_quantized) else { return Ok(super::lora::Base::Dense(self.get(name, shape)?)) };
        let q = self.content.tensor(&mut self.file, &g, &self.device).map_err(|e| LlmError::Weights(format!("{}: tensor {g}: {e}", self.source())))?;
        if matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            return Ok(super::lora::Base::Dense(self.get(name, shape)?));
        }
        if q.shape().dims() != shape {
            return Err(LlmError::Weights(format!("{}: tensor {g} has shape {:?}, the config implies {shape:?}", self.source(), q.shape().dims())));
        }
        let q = match self.permuted_heads(&g) {
            // Rows are whole runs of blocks, so the permutation moves row-sized byte chunks.
            Some(heads) => {
                let (out, _) = (shape[0], shape[1]);
                let data = q.data()?;
                let row = data.len() / out;
                let half = out / heads / 2;
                let mut un = vec![0u8; data.len()];
                // GGUF row (h, j, two) holds HF row (h, two, j).
                for h in 0..heads {
                    for j in 0..half {
                        for two in 0..2 {
                            let src = (h * half + j) * 2 + two;
                            let dst = (h * 2 + two) * half + j;
                            un[dst * row..(dst + 1) * row].copy_from_slice(&data[src * row..(src + 1) * row]);
                        }
                    }
                }
                qtensor_from_ggml(q.dtype(), &un, shape.to_vec(), &self.device)?
            }
            None => q,
        };
        Ok(super::lora::Base::Quantized(QMatMul::from_qtensor(q)?))
    }
    fn source(&self) -> String {
        self.path.display().to_string()
    }
    fn get_optional(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        let Some(g) = Self::gguf_name(name) else { return Ok(None) };
        if !self.content.tensor_infos.contains_key(&g) {
            return Ok(None);
        }
        let q = self.content.tensor(&mut self.file, &g, &self.device).map_err(|e| LlmError::Weights(format!("{}: tensor {g}: {e}", self.source())))?;
        let mut t = q.dequantize(&self.device)?.to_dtype(DType::F32)?;
        if let Some(heads) = self.permuted_heads(&g) {
            let (out, inp) = t.dims2()?;
            if out % (2 * heads) != 0 {
                return Err(LlmError::Weights(format!("{}: {g} has {out} rows, not a multiple of 2 × {heads} heads", self.source())));
            }
            t = t.reshape((heads, out / heads / 2, 2, inp))?.transpose(1, 2)?.contiguous()?.reshape((out, inp))?;
        }
        check_shape(&self.source(), &g, &t, shape)?;
        Ok(Some(t))
    }
}

/// A llama config from a GGUF header (`llama.*` keys), and the weights set to un-permute.
pub fn gguf_config(w: &mut GgufWeights) -> Result<super::llama::LlamaConfig> {
    let src = w.source();
    let ct = &w.content;
    let get = |k: &str| ct.metadata.get(k).ok_or_else(|| LlmError::Config(format!("{src}: GGUF metadata has no `{k}`")));
    let num = |k: &str| -> Result<usize> { Ok(get(k)?.to_u32().map_err(|e| LlmError::Config(format!("{src}: `{k}`: {e}")))? as usize) };
    let arch = get("general.architecture")?.to_string().map_err(|e| LlmError::Config(format!("{src}: {e}")))?.clone();
    if arch != "llama" {
        return Err(LlmError::Config(format!("{src}: GGUF architecture {arch:?} is not supported (llama; use an HF folder for qwen2)")));
    }
    if ct.tensor_infos.contains_key("rope_freqs.weight") {
        return Err(LlmError::Config(format!("{src}: GGUF rope_freqs (Llama 3.1 scaling) is not supported here; use the HF folder")));
    }
    let heads = num("llama.attention.head_count")?;
    let kv = num("llama.attention.head_count_kv").unwrap_or(heads);
    let vocab = ct.tensor_infos.get("token_embd.weight").map(|t| t.shape.dims()[0]).ok_or_else(|| LlmError::Config(format!("{src}: no token_embd.weight")))?;
    let cfg = super::llama::LlamaConfig {
        hidden_size: num("llama.embedding_length")?,
        intermediate_size: num("llama.feed_forward_length")?,
        num_hidden_layers: num("llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv),
        head_dim: None,
        vocab_size: vocab,
        rms_norm_eps: get("llama.attention.layer_norm_rms_epsilon")?.to_f32().map_err(|e| LlmError::Config(format!("{src}: {e}")))? as f64,
        rope_theta: get("llama.rope.freq_base").and_then(|v| v.to_f32().map_err(|e| LlmError::Config(e.to_string()))).unwrap_or(10_000.0) as f64,
        rope_scaling: None,
        max_position_embeddings: num("llama.context_length").unwrap_or(2048).min(16_384),
        tie_word_embeddings: !ct.tensor_infos.contains_key("output.weight"),
        attention_bias: false,
        hidden_act: None,
    };
    w.unpermute = Some((heads, kv));
    Ok(cfg)
}
