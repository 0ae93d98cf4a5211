//! LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022), as Hugging
//! Face PEFT computes it: `y = W x + b + B A dropout(x) · s`, with `s = alpha / r`, or
//! `alpha / sqrt(r)` with `use_rslora` (Kalajdzievski, 2023). A starts Kaiming-uniform
//! (`a = sqrt(5)`, bound `1 / sqrt(in)`), B at zero, so an untrained adapter changes nothing.
//!
//! The base weight is frozen and shared, never copied or merged. Adapters save as PEFT does:
//! `adapter_model.safetensors` with keys `base_model.model.<module>.lora_A.weight` (`r × in`) and
//! `….lora_B.weight` (`out × r`), and `adapter_config.json`, so that
//! `PeftModel.from_pretrained(AutoModelForCausalLM…, dir)` loads them.
use super::Result;
use crate::models::layers::{dropout, Init};
use crate::models::{Params, TrainCtx};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `[llm.lora]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank.
    pub r: usize,
    /// Scale numerator.
    pub alpha: f64,
    /// Dropout on the adapter's input, in training.
    pub dropout: f32,
    /// Projections that get an adapter, by HF module name.
    pub target_modules: Vec<String>,
    /// Scale `alpha / sqrt(r)` instead of `alpha / r`.
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 8,
            alpha: 16.0,
            dropout: 0.05,
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec(),
            use_rslora: false,
        }
    }
}

/// The projections a llama-family block has.
pub const MODULES: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

impl LoraConfig {
    /// The scale applied to `B A x`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Refuses a rank of 0, a non-finite alpha, a dropout outside [0, 1) and unknown modules.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.r == 0 || self.r > 4096 {
            return Err(format!("lora r = {} must be in 1..=4096", self.r));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(format!("lora alpha = {} must be a positive number", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("lora dropout = {} must be in [0, 1)", self.dropout));
        }
        if self.target_modules.is_empty() {
            return Err("lora target_modules is empty: name at least one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj".into());
        }
        for m in &self.target_modules {
            if !MODULES.contains(&m.as_str()) {
                return Err(format!("lora target module {m:?} is not one of {}", MODULES.join(", ")));
            }
        }
        Ok(())
    }
}

struct Adapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f32,
}

/// A frozen weight: dense f32, or kept quantized (a GGUF block format, multiplied by candle's
/// `QMatMul`; inference only: candle's quantized product has no backward).
pub enum Base {
    /// `out × in`, f32.
    Dense(Tensor),
    /// `out × in`, quantized.
    Quantized(candle_core::quantized::QMatMul),
}

impl Base {
    fn out_dim(&self) -> candle_core::Result<usize> {
        match self {
            Base::Dense(w) => w.dim(0),
            Base::Quantized(q) => match q {
                candle_core::quantized::QMatMul::QTensor(t) => Ok(t.shape().dims()[0]),
                candle_core::quantized::QMatMul::Tensor(w) | candle_core::quantized::QMatMul::TensorF16(w) => w.dim(0),
            },
        }
    }
}

/// A frozen linear layer, `y = x Wᵀ + b`, with an optional LoRA adapter.
pub struct LoraLinear {
    weight: Base,
    bias: Option<Tensor>,
    path: String,
    adapter: Option<Adapter>,
}

impl LoraLinear {
    /// The layer at module path `path` (e.g. `model.layers.0.self_attn.q_proj`), whose short
    /// name is `module`; it gets an adapter when `lora` targets `module`, its tensors created in
    /// `vars` as `<path>.lora_A.weight` and `<path>.lora_B.weight`.
    pub fn new(weight: Base, bias: Option<Tensor>, path: &str, module: &str, d_in: usize, lora: Option<&LoraConfig>, vars: &mut Params) -> Result<Self> {
        let adapter = match lora.filter(|c| c.target_modules.iter().any(|m| m == module)) {
            Some(c) => {
                let d_out = weight.out_dim()?;
                let a = vars.var(&format!("{path}.lora_A.weight"), &[c.r, d_in], Init::Uniform(1.0 / (d_in as f64).sqrt()))?;
                let b = vars.var(&format!("{path}.lora_B.weight"), &[d_out, c.r], Init::Zeros)?;
                Some(Adapter { a, b, scale: c.scale(), dropout: c.dropout })
            }
            None => None,
        };
        Ok(LoraLinear { weight, bias, path: path.to_string(), adapter })
    }

    /// Whether an adapter is attached.
    pub fn has_lora(&self) -> bool {
        self.adapter.is_some()
    }

    /// Applies the layer over the last dimension of `x`; adapter dropout only with `ctx`.
    pub fn forward(&self, x: &Tensor, ctx: Option<&TrainCtx>) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let d_in = *dims.last().unwrap_or(&0);
        let rows = x.elem_count() / d_in.max(1);
        let x2 = x.reshape((rows, d_in))?;
        let mut y = match &self.weight {
            Base::Dense(w) => frozen_matmul(&x2, w)?,
            Base::Quantized(_) if ctx.is_some() => {
                return Err(super::LlmError::Input(format!(
                    "{}: a quantized base cannot be trained through (its product has no backward): load it dequantized",
                    self.path
                )))
            }
            Base::Quantized(q) => candle_core::Module::forward(q, &x2)?,
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(ad) = &self.adapter {
            let xd = dropout(&x2, ad.dropout, ctx)?;
            let low = xd.matmul(&ad.a.t()?)?.matmul(&ad.b.t()?)?;
            y = (y + (low * ad.scale)?)?;
        }
        let mut out = dims;
        if let Some(l) = out.last_mut() {
            *l = self.weight.out_dim()?;
        }
        Ok(y.reshape(out)?)
    }
}

/// `x Wᵀ` for a frozen `W` (`out × in`). candle's matmul backward computes the gradient of both
/// operands, so a plain `x.matmul(Wᵀ)` inside a trained graph spends a third of the backward
/// pass (and a weight-sized buffer per projection) on gradients of frozen weights. On CPU this
/// is a custom op whose backward is `grad · W` alone; elsewhere the plain product.
pub fn frozen_matmul(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    if f32_cpu(x) && f32_cpu(w) {
        x.contiguous()?.apply_op1(FrozenLinear { w: w.contiguous()? })
    } else {
        x.matmul(&w.t()?)
    }
}

struct FrozenLinear {
    w: Tensor,
}

impl candle_core::CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }
    fn cpu_fwd(&self, storage: &candle_core::CpuStorage, layout: &candle_core::Layout) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (rows, d_in) = layout.shape().dims2()?;
        let x = match (storage, layout.contiguous_offsets()) {
            (candle_core::CpuStorage::F32(v), Some((a, b))) => &v[a..b],
            _ => candle_core::bail!("frozen-linear: needs a contiguous f32 input"),
        };
        let (w_storage, w_layout) = self.w.storage_and_layout();
        let (d_out, wi) = w_layout.shape().dims2()?;
        if wi != d_in {
            candle_core::bail!("frozen-linear: input width {d_in}, weight {d_out} × {wi}");
        }
        let w = match (&*w_storage, w_layout.contiguous_offsets()) {
            (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, b))) => &v[a..b],
            _ => candle_core::bail!("frozen-linear: needs a contiguous f32 weight on the CPU"),
        };
        let mut out = vec![0f32; rows * d_out];
        let par = if rows * d_out * d_in >= 1 << 18 { gemm::Parallelism::Rayon(rayon::current_num_threads()) } else { gemm::Parallelism::None };
        crate::math::matmul_nt(&mut out, x, w, rows, d_out, d_in, false, par);
        Ok((candle_core::CpuStorage::F32(out), (rows, d_out).into()))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w)?))
    }
}

/// PEFT's key for one adapter tensor of `path` (`A` or `B`), for a causal-LM wrapper
/// (`PeftModel` over `…ForCausalLM`, whose decoder sits under `model.`).
pub fn peft_key(path: &str, which: char) -> String {
    format!("base_model.model.{path}.lora_{which}.weight")
}

/// Writes `dir/adapter_model.safetensors` and `dir/adapter_config.json` (each to a temporary
/// name, then renamed). `base` goes into `base_model_name_or_path`.
pub fn save_peft(dir: &Path, cfg: &LoraConfig, adapters: &[&LoraLinear], base: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tensors = Vec::new();
    for l in adapters {
        if let Some(ad) = &l.adapter {
            tensors.push((peft_key(&l.path, 'A'), ad.a.to_device(&candle_core::Device::Cpu)?));
            tensors.push((peft_key(&l.path, 'B'), ad.b.to_device(&candle_core::Device::Cpu)?));
        }
    }
    crate::train::checkpoint::save_tensors(&dir.join("adapter_model.safetensors"), &tensors)?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": cfg.r,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": cfg.target_modules,
        "use_rslora": cfg.use_rslora,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
    });
    crate::io::write_atomic_file(&dir.join("adapter_config.json"), |f| {
        serde_json::to_writer_pretty(f, &config)?;
        Ok(())
    })
}
