//! Layers the encoders share: parameters with seeded initialisation, linear, layer norm,
//! dropout, multi-head attention, the feed-forward block, the transformer encoder and a GRU.
//!
//! They follow RecBole 1.2.1 (`recbole/model/layers.py`): post-norm transformer layers with GELU
//! (erf form), LayerNorm eps 1e-12 and an additive -10000 attention mask. Weight names follow
//! RecBole's PyTorch state dicts, so checkpoints can be compared with it.
//!
//! Every op here has a backward in candle 0.11: softmax is `candle_nn::ops::softmax` (exp, sum,
//! div), layer norm is built from basic ops, never the fused kernels that drop gradients.
use super::Result;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;

/// How a parameter starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal(0, std): RecBole's `initializer_range` for linear and embedding weights.
    Normal(f64),
    /// Uniform(-bound, bound): PyTorch's default for `nn.Linear` (bound 1/sqrt(fan_in)).
    Uniform(f64),
    /// Xavier (Glorot) normal, from the fan-in and fan-out of a 2-D weight.
    XavierNormal,
    /// Xavier (Glorot) uniform.
    XavierUniform,
    /// All zeros (biases, LayerNorm shift).
    Zeros,
    /// All ones (LayerNorm scale).
    Ones,
}

/// The trainable tensors of a model, created from a seeded generator (candle's CPU generator
/// cannot be seeded) and kept in a `VarMap` for the optimizer and checkpoints.
pub struct Params {
    map: VarMap,
    rng: StdRng,
    device: Device,
}

impl Params {
    /// An empty set whose initial values follow from `seed`.
    pub fn new(seed: u64, device: &Device) -> Self {
        Params { map: VarMap::new(), rng: StdRng::seed_from_u64(seed), device: device.clone() }
    }

    /// The device parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The variables, by name.
    pub fn var_map(&self) -> &VarMap {
        &self.map
    }

    /// The variables sorted by name (a stable order for optimizers and checkpoints).
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = self.map.data().lock().expect("var map lock");
        let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Creates a trainable tensor `name` of `shape`.
    pub fn var(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let (fan_out, fan_in) = match shape {
            [o, i] => (*o as f64, *i as f64),
            [o] => (*o as f64, *o as f64),
            _ => (n as f64, n as f64),
        };
        let data: Vec<f32> = match init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Normal(std) => (0..n).map(|_| (normal(&mut self.rng) * std) as f32).collect(),
            Init::XavierNormal => {
                let std = (2.0 / (fan_in + fan_out)).sqrt();
                (0..n).map(|_| (normal(&mut self.rng) * std) as f32).collect()
            }
            Init::Uniform(b) => (0..n).map(|_| self.rng.random_range(-b..b) as f32).collect(),
            Init::XavierUniform => {
                let b = (6.0 / (fan_in + fan_out)).sqrt();
                (0..n).map(|_| self.rng.random_range(-b..b) as f32).collect()
            }
        };
        let t = Tensor::from_vec(data, shape, &self.device)?;
        let var = Var::from_tensor(&t)?;
        let mut map = self.map.data().lock().expect("var map lock");
        if map.insert(name.to_string(), var.clone()).is_some() {
            return Err(super::ModelError::Config(format!("parameter {name} defined twice")));
        }
        Ok(var.as_tensor().clone())
    }

    /// Zeroes row `row` of a 2-D parameter (an embedding's padding row, as `padding_idx` does).
    pub fn zero_row(&self, name: &str, row: usize) -> Result<()> {
        let map = self.map.data().lock().expect("var map lock");
        let var = map.get(name).ok_or_else(|| super::ModelError::Config(format!("no parameter {name}")))?;
        let (rows, _) = var.dims2()?;
        let mut mask = vec![1f32; rows];
        mask[row] = 0.0;
        let mask = Tensor::from_vec(mask, (rows, 1), &self.device)?;
        var.set(&var.as_tensor().broadcast_mul(&mask)?)?;
        Ok(())
    }
}

/// A standard normal draw (Box–Muller; `rand` has no normal distribution without `rand_distr`).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Training-time state: the seeded generator that draws dropout masks. Inference passes `None`.
pub struct TrainCtx {
    rng: Mutex<StdRng>,
}

impl TrainCtx {
    /// A context whose masks follow from `seed`.
    pub fn new(seed: u64) -> Self {
        TrainCtx { rng: Mutex::new(StdRng::seed_from_u64(seed)) }
    }

    /// Draws uniform numbers in [0, 1) from the context's generator.
    pub fn uniform(&self, n: usize) -> Vec<f32> {
        let mut rng = self.rng.lock().expect("rng lock");
        (0..n).map(|_| rng.random::<f32>()).collect()
    }

    /// A random index below `n`.
    pub fn below(&self, n: u32) -> u32 {
        self.rng.lock().expect("rng lock").random_range(0..n)
    }
}

/// Inverted dropout with a seeded mask; the identity outside training or when `p` is 0.
pub fn dropout(x: &Tensor, p: f32, ctx: Option<&TrainCtx>) -> Result<Tensor> {
    let Some(ctx) = ctx else { return Ok(x.clone()) };
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let scale = 1.0 / (1.0 - p);
    let mask: Vec<f32> = ctx.uniform(x.elem_count()).into_iter().map(|u| if u < p { 0.0 } else { scale }).collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
    Ok(x.mul(&mask)?)
}

/// `y = x Wᵀ + b`, W stored `out × in` as in PyTorch.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// RecBole's transformer initialisation: weight Normal(0, std), bias zero.
    pub fn normal(p: &mut Params, name: &str, d_in: usize, d_out: usize, std: f64) -> Result<Self> {
        let weight = p.var(&format!("{name}.weight"), &[d_out, d_in], Init::Normal(std))?;
        let bias = Some(p.var(&format!("{name}.bias"), &[d_out], Init::Zeros)?);
        Ok(Linear { weight, bias })
    }

    /// PyTorch's default `nn.Linear` initialisation: weight and bias Uniform(±1/sqrt(in)).
    pub fn torch_default(p: &mut Params, name: &str, d_in: usize, d_out: usize) -> Result<Self> {
        Self::torch_default_bias(p, name, d_in, d_out, true)
    }

    /// [`torch_default`](Self::torch_default), with or without a bias.
    pub fn torch_default_bias(p: &mut Params, name: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Self> {
        let b = 1.0 / (d_in as f64).sqrt();
        let weight = p.var(&format!("{name}.weight"), &[d_out, d_in], Init::Uniform(b))?;
        let bias = if bias { Some(p.var(&format!("{name}.bias"), &[d_out], Init::Uniform(b))?) } else { None };
        Ok(Linear { weight, bias })
    }

    /// Applies the layer over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let d_in = *dims.last().expect("rank ≥ 1");
        let rows = x.elem_count() / d_in;
        let y = x.reshape((rows, d_in))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = dims;
        *out.last_mut().expect("rank ≥ 1") = self.weight.dims()[0];
        Ok(y.reshape(out)?)
    }
}

/// Layer normalisation over the last dimension, from basic ops (candle's fused `layer_norm`
/// has no backward).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Scale 1, shift 0.
    pub fn new(p: &mut Params, name: &str, dim: usize, eps: f64) -> Result<Self> {
        let weight = p.var(&format!("{name}.weight"), &[dim], Init::Ones)?;
        let bias = p.var(&format!("{name}.bias"), &[dim], Init::Zeros)?;
        Ok(LayerNorm { weight, bias, eps })
    }

    /// Normalises `x` over its last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(xn.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
    }
}

/// Shared hyperparameters of a transformer encoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TransformerSpec {
    /// Layers.
    pub n_layers: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Model width.
    pub hidden: usize,
    /// Feed-forward width.
    pub inner: usize,
    /// Dropout on hidden states.
    pub hidden_dropout: f32,
    /// Dropout on attention probabilities.
    pub attn_dropout: f32,
    /// LayerNorm epsilon.
    pub eps: f64,
    /// Std of the normal initialisation.
    pub init_std: f64,
}

/// Multi-head self-attention with residual and post-norm (RecBole's `MultiHeadAttention`).
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    norm: LayerNorm,
    n_heads: usize,
    attn_dropout: f32,
    hidden_dropout: f32,
}

impl MultiHeadAttention {
    /// Weights under `name.{query,key,value,dense,LayerNorm}`.
    pub fn new(p: &mut Params, name: &str, s: &TransformerSpec) -> Result<Self> {
        if !s.hidden.is_multiple_of(s.n_heads) {
            return Err(super::ModelError::Config(format!("hidden size {} is not a multiple of {} heads", s.hidden, s.n_heads)));
        }
        let lin = |p: &mut Params, n: &str| Linear::normal(p, &format!("{name}.{n}"), s.hidden, s.hidden, s.init_std);
        Ok(MultiHeadAttention {
            query: lin(p, "query")?,
            key: lin(p, "key")?,
            value: lin(p, "value")?,
            dense: lin(p, "dense")?,
            norm: LayerNorm::new(p, &format!("{name}.LayerNorm"), s.hidden, s.eps)?,
            n_heads: s.n_heads,
            attn_dropout: s.attn_dropout,
            hidden_dropout: s.hidden_dropout,
        })
    }

    /// `x`: B × L × d; `mask`: additive, broadcastable to B × H × L × L.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, ctx: Option<&TrainCtx>) -> Result<Tensor> {
        self.attend(x, x, mask, ctx)
    }

    /// [`forward`](Self::forward) at one query position per row only, `lens[i] - 1`, for
    /// inference: `x` B × L × d and `mask` B × 1 × L × L ([`attention_mask`]) give B × d.
    pub fn forward_last(&self, x: &Tensor, mask: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let (b, l, d) = x.dims3()?;
        let at = super::last_positions(lens, l, x.device())?;
        let xq = x.reshape((b * l, d))?.index_select(&at, 0)?.reshape((b, 1, d))?;
        let mask = mask.reshape((b * l, l))?.index_select(&at, 0)?.reshape((b, 1, 1, l))?;
        Ok(self.attend(&xq, x, &mask, None)?.reshape((b, d))?)
    }

    /// Queries `xq` (B × Lq × d) attending over `x` (B × L × d), with the residual and post-norm
    /// on `xq`; `mask` is additive, broadcastable to B × H × Lq × L.
    fn attend(&self, xq: &Tensor, x: &Tensor, mask: &Tensor, ctx: Option<&TrainCtx>) -> Result<Tensor> {
        let (b, lq, d) = xq.dims3()?;
        let l = x.dim(1)?;
        let (h, dh) = (self.n_heads, d / self.n_heads);
        let heads = |t: Tensor, n: usize| -> Result<Tensor> { Ok(t.reshape((b, n, h, dh))?.transpose(1, 2)?.contiguous()?) };
        let q = heads(self.query.forward(xq)?, lq)?;
        let k = heads(self.key.forward(x)?, l)?;
        let v = heads(self.value.forward(x)?, l)?;
        let scores = (q.matmul(&k.t()?.contiguous()?)? / (dh as f64).sqrt())?;
        let scores = scores.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let probs = dropout(&probs, self.attn_dropout, ctx)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, lq, d))?;
        let out = dropout(&self.dense.forward(&out)?, self.hidden_dropout, ctx)?;
        self.norm.forward(&(out + xq)?)
    }
}

/// Position-wise feed-forward with GELU, residual and post-norm (RecBole's `FeedForward`).
#[derive(Debug, Clone)]
pub struct FeedForward {
    dense_1: Linear,
    dense_2: Linear,
    norm: LayerNorm,
    dropout: f32,
}

impl FeedForward {
    /// Weights under `name.{dense_1,dense_2,LayerNorm}`.
    pub fn new(p: &mut Params, name: &str, s: &TransformerSpec) -> Result<Self> {
        Ok(FeedForward {
            dense_1: Linear::normal(p, &format!("{name}.dense_1"), s.hidden, s.inner, s.init_std)?,
            dense_2: Linear::normal(p, &format!("{name}.dense_2"), s.inner, s.hidden, s.init_std)?,
            norm: LayerNorm::new(p, &format!("{name}.LayerNorm"), s.hidden, s.eps)?,
            dropout: s.hidden_dropout,
        })
    }

    /// Applies the block to `x`.
    pub fn forward(&self, x: &Tensor, ctx: Option<&TrainCtx>) -> Result<Tensor> {
        let y = self.dense_1.forward(x)?.gelu_erf()?;
        let y = dropout(&self.dense_2.forward(&y)?, self.dropout, ctx)?;
        self.norm.forward(&(y + x)?)
    }
}

/// A stack of attention + feed-forward layers (RecBole's `TransformerEncoder`).
#[derive(Debug, Clone)]
pub struct TransformerEncoder {
    layers: Vec<(MultiHeadAttention, FeedForward)>,
}

impl TransformerEncoder {
    /// Weights under `name.layer.{i}.{multi_head_attention,feed_forward}`.
    pub fn new(p: &mut Params, name: &str, s: &TransformerSpec) -> Result<Self> {
        let layers = (0..s.n_layers)
            .map(|i| {
                let base = format!("{name}.layer.{i}");
                Ok((MultiHeadAttention::new(p, &format!("{base}.multi_head_attention"), s)?, FeedForward::new(p, &format!("{base}.feed_forward"), s)?))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TransformerEncoder { layers })
    }

    /// Runs every layer.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, ctx: Option<&TrainCtx>) -> Result<Tensor> {
        let mut h = x.clone();
        for (attn, ff) in &self.layers {
            h = ff.forward(&attn.forward(&h, mask, ctx)?, ctx)?;
        }
        Ok(h)
    }

    /// The output at position `lens[i] - 1` of each row, `B × d`, for inference: every layer
    /// but the last runs in full (later positions' keys and values need it), the last one at
    /// those positions only.
    pub fn forward_last(&self, x: &Tensor, mask: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let Some(((attn, ff), rest)) = self.layers.split_last() else {
            return super::gather_last(x, lens);
        };
        let mut h = x.clone();
        for (a, f) in rest {
            h = f.forward(&a.forward(&h, mask, None)?, None)?;
        }
        ff.forward(&attn.forward_last(&h, mask, lens)?, None)
    }
}

/// The additive attention mask, `B × 1 × L × L`: 0 where a query may attend to a key, -10000
/// elsewhere (keys past the sequence's length, and future keys when `causal`).
pub fn attention_mask(lens: &[usize], l: usize, causal: bool, device: &Device) -> Result<Tensor> {
    let mut m = vec![0f32; lens.len() * l * l];
    for (b, &n) in lens.iter().enumerate() {
        for q in 0..l {
            for k in 0..l {
                if k >= n || (causal && k > q) {
                    m[(b * l + q) * l + k] = -10000.0;
                }
            }
        }
    }
    Ok(Tensor::from_vec(m, (lens.len(), 1, l, l), device)?)
}

/// The input of RecBole's SASRec and BERT4Rec encoders: item + position embeddings of `ids`
/// (B × L), plus `extra` (B × L × d, the completion input) when given, layer-normed, then
/// dropout `p`.
pub fn embed_with_positions(
    items: &Tensor,
    pos: &Tensor,
    norm: &LayerNorm,
    p: f32,
    ids: &Tensor,
    extra: Option<&Tensor>,
    ctx: Option<&TrainCtx>,
) -> Result<Tensor> {
    let (b, l) = ids.dims2()?;
    let mut x = embed(items, ids)?.broadcast_add(&embed(pos, &positions(b, l, ids.device())?)?)?;
    if let Some(e) = extra {
        x = (x + e)?;
    }
    dropout(&norm.forward(&x)?, p, ctx)
}

/// Per-position completion ratios of a batch, `B × L` each: the ratio (0 where unknown) and
/// 1 where it is known.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Ratios in [0, 1], 0 where unknown.
    pub value: Tensor,
    /// 1 where the ratio is known, 0 where not (padding, masked positions, nulls).
    pub known: Tensor,
}

impl Completion {
    /// Rows of ratios, each padded at the end with unknowns to `width`; a row shorter than its
    /// sequence (or empty) leaves the rest unknown.
    pub fn from_rows(rows: &[&[Option<f32>]], width: usize, device: &Device) -> Result<Self> {
        let mut value = vec![0f32; rows.len() * width];
        let mut known = vec![0f32; rows.len() * width];
        for (b, row) in rows.iter().enumerate() {
            for (t, r) in row.iter().take(width).enumerate() {
                if let Some(r) = r.filter(|r| r.is_finite()) {
                    value[b * width + t] = r.clamp(0.0, 1.0);
                    known[b * width + t] = 1.0;
                }
            }
        }
        Ok(Completion { value: Tensor::from_vec(value, (rows.len(), width), device)?, known: Tensor::from_vec(known, (rows.len(), width), device)? })
    }
}

/// The completion ratio as an input (`completion = "embed"`): `r · w + b` where the ratio is
/// known, a learned "unknown" vector where it is not. The paper concatenates the ratio to the
/// item features; adding its projection keeps every width fixed.
#[derive(Debug, Clone)]
pub struct CompletionEmbed {
    weight: Tensor,
    bias: Tensor,
    unknown: Tensor,
}

impl CompletionEmbed {
    /// Weights `name.{weight,bias,unknown}`, each of width `dim`.
    pub fn new(p: &mut Params, name: &str, dim: usize, std: f64) -> Result<Self> {
        Ok(CompletionEmbed {
            weight: p.var(&format!("{name}.weight"), &[dim], Init::Normal(std))?,
            bias: p.var(&format!("{name}.bias"), &[dim], Init::Zeros)?,
            unknown: p.var(&format!("{name}.unknown"), &[dim], Init::Normal(std))?,
        })
    }

    /// `B × L × d` for the batch's ratios.
    pub fn forward(&self, c: &Completion) -> Result<Tensor> {
        let (b, l) = c.value.dims2()?;
        let d = self.weight.dim(0)?;
        let v = c.value.reshape((b, l, 1))?;
        let k = c.known.reshape((b, l, 1))?;
        let seen = v.broadcast_mul(&self.weight.reshape((1, 1, d))?)?.broadcast_add(&self.bias.reshape((1, 1, d))?)?;
        let unseen = (1.0 - &k)?.broadcast_mul(&self.unknown.reshape((1, 1, d))?)?;
        Ok((seen.broadcast_mul(&k)? + unseen)?)
    }

    /// The encoder's extra input for a batch: `None` without a module; an error when the module
    /// has no ratios to read.
    pub fn input(module: Option<&Self>, c: Option<&Completion>) -> Result<Option<Tensor>> {
        match (module, c) {
            (Some(m), Some(c)) => Ok(Some(m.forward(c)?)),
            (Some(_), None) => Err(super::ModelError::Config("completion = \"embed\" needs the batch's completion ratios".into())),
            (None, _) => Ok(None),
        }
    }
}

/// Embedding lookup: rows of `table` for u32 indices of any shape.
pub fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let mut dims = ids.dims().to_vec();
    dims.push(table.dim(1)?);
    Ok(table.index_select(&ids.flatten_all()?, 0)?.reshape(dims)?)
}

/// Position indices `0..l` for each of `b` rows, as a `b × l` u32 tensor.
pub fn positions(b: usize, l: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::arange(0u32, l as u32, device)?.unsqueeze(0)?.broadcast_as((b, l))?.contiguous()?)
}

/// A single-layer GRU without biases (RecBole's `nn.GRU(bias=False)`), gates ordered r, z, n as
/// in PyTorch.
#[derive(Debug, Clone)]
pub struct Gru {
    w_ih: Tensor,
    w_hh: Tensor,
    hidden: usize,
}

impl Gru {
    /// Weights `name.weight_ih_l0` (3H × E) and `name.weight_hh_l0` (3H × H), Xavier uniform.
    pub fn new(p: &mut Params, name: &str, input: usize, hidden: usize, layer: usize) -> Result<Self> {
        // RecBole's GRU4Rec re-initialises only layer 0 (`weight_ih_l0`, `weight_hh_l0`, Xavier
        // uniform); deeper layers keep PyTorch's `nn.GRU` default, uniform(±1/√hidden).
        let init = if layer == 0 { Init::XavierUniform } else { Init::Uniform(1.0 / (hidden as f64).sqrt()) };
        let w_ih = p.var(&format!("{name}.weight_ih_l{layer}"), &[3 * hidden, input], init)?;
        let w_hh = p.var(&format!("{name}.weight_hh_l{layer}"), &[3 * hidden, hidden], init)?;
        Ok(Gru { w_ih, w_hh, hidden })
    }

    /// `x`: B × L × E → B × L × H, from a zero initial state.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, e) = x.dims3()?;
        let h_dim = self.hidden;
        // The input projections of every step in one matmul.
        let xi = x.reshape((b * l, e))?.matmul(&self.w_ih.t()?)?.reshape((b, l, 3 * h_dim))?;
        let w_hh_t = self.w_hh.t()?;
        let mut h = Tensor::zeros((b, h_dim), DType::F32, x.device())?;
        let mut outs = Vec::with_capacity(l);
        for t in 0..l {
            let gi = xi.narrow(1, t, 1)?.squeeze(1)?;
            let gh = h.matmul(&w_hh_t)?;
            let r = candle_nn::ops::sigmoid(&(gi.narrow(1, 0, h_dim)? + gh.narrow(1, 0, h_dim)?)?)?;
            let z = candle_nn::ops::sigmoid(&(gi.narrow(1, h_dim, h_dim)? + gh.narrow(1, h_dim, h_dim)?)?)?;
            let n = (gi.narrow(1, 2 * h_dim, h_dim)? + r.mul(&gh.narrow(1, 2 * h_dim, h_dim)?)?)?.tanh()?;
            h = (&n + z.mul(&(&h - &n)?)?)?;
            outs.push(h.clone());
        }
        Ok(Tensor::stack(&outs, 1)?)
    }

    /// The state after each row's last real step (`lens[i]`), for inference: `x` B × L × E →
    /// B × H. It runs on host buffers, one matrix product per step into a reused buffer and the
    /// gates in vectorised `sigmoid`/`tanh`: candle's graph of small ops and libm's `tanhf` were
    /// most of GRU4Rec's evaluation time. The same values as [`forward`](Self::forward), to 1e-6.
    pub fn last_state(&self, x: &Tensor, lens: &[usize]) -> Result<Tensor> {
        use crate::math::{matmul_nt, sigmoid, tanh};
        let (b, l, e) = x.dims3()?;
        let hd = self.hidden;
        let device = x.device().clone();
        let x: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let w_ih: Vec<f32> = self.w_ih.flatten_all()?.to_vec1()?;
        let w_hh: Vec<f32> = self.w_hh.flatten_all()?.to_vec1()?;
        let lens: Vec<usize> = lens.iter().map(|&n| n.clamp(1, l.max(1))).collect();
        // Per step: the inputs at t, their projection, the state's projection; all reused.
        let (mut xt, mut gi, mut gh) = (vec![0f32; b * e], vec![0f32; b * 3 * hd], vec![0f32; b * 3 * hd]);
        let mut h = vec![0f32; b * hd];
        for t in 0..lens.iter().copied().max().unwrap_or(0) {
            for (row, dst) in xt.chunks_exact_mut(e).enumerate() {
                dst.copy_from_slice(&x[(row * l + t) * e..][..e]);
            }
            matmul_nt(&mut gi, &xt, &w_ih, b, 3 * hd, e, false, gemm::Parallelism::None);
            matmul_nt(&mut gh, &h, &w_hh, b, 3 * hd, hd, false, gemm::Parallelism::None);
            let rows = h.chunks_exact_mut(hd).zip(gi.chunks_exact(3 * hd)).zip(gh.chunks_exact(3 * hd));
            for (((hr, gi), gh), _) in rows.zip(&lens).filter(|(_, &n)| t < n) {
                let (ir, rest) = gi.split_at(hd);
                let (iz, inn) = rest.split_at(hd);
                let (hr_, rest) = gh.split_at(hd);
                let (hz, hn) = rest.split_at(hd);
                for (((((hj, &ir), &iz), &inn), (&hr_, &hz)), &hn) in hr.iter_mut().zip(ir).zip(iz).zip(inn).zip(hr_.iter().zip(hz)).zip(hn) {
                    let r = sigmoid(ir + hr_);
                    let z = sigmoid(iz + hz);
                    let n = tanh(inn + r * hn);
                    *hj = n + z * (*hj - n);
                }
            }
        }
        Ok(Tensor::from_vec(h, (b, hd), &device)?)
    }
}
