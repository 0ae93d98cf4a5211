//! A validated fusion plan (`plugins::fusion::plan`) built as candle modules.
//!
//! A fusion plugin is asked once for a plan; this file turns it into weights and a forward pass
//! over the whole catalog at once: `items × width` per node, evaluated once per training step.
//! Every op has a backward in candle 0.11 (softmax is `candle_nn::ops::softmax`, layer norm the
//! composite [`LayerNorm`]).
//!
//! **Missing modalities.** An input may come with a presence mask (`items × 1`, 1 present, 0
//! missing). Element-wise ops carry their source's mask along; ops that combine sources leave
//! a missing source out of that item's fusion:
//! - `concat`, `add`: a missing source contributes zeros;
//! - `mul`: a missing source is the identity (ones);
//! - `weighted-sum`: the weights are renormalised over the sources present (to the same total);
//! - `gate`: a missing source is zeroed in the gate's input and left out of the sum;
//! - `attention`: missing keys are masked out; an item with no key present gets zeros;
//! - `film`: a missing condition leaves the target unchanged (`t ⊙ (1 + γ) + β` with γ = β = 0).
//!
//! A combining op's result is present where any source is. With `missing = "zeros"` (the paper's
//! behaviour) there are no masks: a missing vector is a zero vector like any other.
//!
//! Weights are named by node, `fusion.n{i}.{linear,layer_norm,weights,gate,attention.*,film}`,
//! so checkpoints and `--resume` cover them. Nodes that depend only on frozen inputs through
//! weight-free ops (e.g. `l2_norm(input("audio"))`) are computed once, at build time.
use super::layers::{dropout, Init, LayerNorm, Linear, Params, TrainCtx};
use super::{ModelError, Result};
use crate::plugins::fusion::{Activation, Op, Plan};
use candle_core::{DType, Tensor, D};

/// The most trainable parameters a plan may create (2²⁷ ≈ 134M floats, 512 MiB, before the
/// optimizer's two moments).
pub const MAX_PARAMS: u64 = 1 << 27;
/// The most activation floats one evaluation over the catalog may hold (all nodes together,
/// 2³⁰ floats = 4 GiB); the backward pass keeps about as much again.
pub const MAX_ACTIVATIONS: u64 = 1 << 30;
/// The epsilon of the plan's layer norms (PyTorch's default).
const LN_EPS: f64 = 1e-5;
/// Added under the square root of an L2 norm: the gradient stays finite at zero vectors.
const L2_EPS: f64 = 1e-12;

/// One frozen input of the plan: a modality's vectors for every item, with their presence.
#[derive(Debug, Clone)]
pub struct ModalityInput {
    /// Its name in the plan (`Op::Input`).
    pub name: String,
    /// `items × dim`; rows of missing items are zeros.
    pub values: Tensor,
    /// `items × 1`, 1.0 where the item has a vector; `None` when every item has one (or when
    /// missing vectors count as zeros).
    pub present: Option<Tensor>,
}

/// The trainable weights of one node.
enum Weights {
    None,
    Linear(Linear),
    LayerNorm(LayerNorm),
    /// Softmax logits of a learned weighted sum.
    Logits(Tensor),
    Gate(Linear),
    Attention {
        query: Linear,
        key: Linear,
        value: Linear,
        out: Linear,
    },
    Film(Linear),
}

/// A node's value over the catalog and where it is present.
#[derive(Clone)]
struct Value {
    x: Tensor,
    present: Option<Tensor>,
}

/// A fusion plan with its weights, ready to run.
pub struct FusionModule {
    plan: Plan,
    weights: Vec<Weights>,
    /// Values of the nodes computed once at build time.
    constant: Vec<Option<Value>>,
    /// The nodes the output depends on.
    needed: Vec<bool>,
    inputs: Vec<ModalityInput>,
    /// Where the `id` input is present (`items × 1`); `None`: everywhere.
    id_present: Option<Tensor>,
}

/// Trainable parameters the plan's node `i` creates. Saturating: a gate or a FiLM over inputs
/// 2³² wide overflowed `u64` (a panic in debug builds, a small wrapped count that passed the limit
/// in release ones).
fn node_params(plan: &Plan, i: usize) -> u64 {
    let d = |n: usize| plan.dims[n] as u64;
    // A linear layer `a → b` with its bias.
    let linear = |a: u64, b: u64| a.saturating_mul(b).saturating_add(b);
    match &plan.nodes[i] {
        Op::Linear { src, out_dim, bias } => d(*src).saturating_mul(*out_dim as u64).saturating_add(if *bias { *out_dim as u64 } else { 0 }),
        Op::LayerNorm(s) => d(*s).saturating_mul(2),
        Op::WeightedSum { srcs, fixed: None } => srcs.len() as u64,
        Op::Gate(srcs) => {
            let w = (srcs.len() as u64).saturating_mul(d(srcs[0]));
            linear(w, w)
        }
        Op::Attention { query, .. } => linear(d(*query), d(*query)).saturating_mul(4),
        Op::Film { target, condition } => linear(d(*condition), d(*target).saturating_mul(2)),
        _ => 0,
    }
}

/// Checks that the plan fits in memory over `n_items` items: its total parameter count, and the
/// activations of one evaluation. The error names the largest node.
pub fn check_size(plan: &Plan, n_items: usize) -> std::result::Result<(), String> {
    let per_node: Vec<u64> = (0..plan.nodes.len()).map(|i| node_params(plan, i)).collect();
    let total: u64 = per_node.iter().fold(0, |a, &p| a.saturating_add(p));
    let biggest = |v: &[u64]| v.iter().enumerate().max_by_key(|(_, &p)| p).map_or(0, |(i, _)| i);
    if total > MAX_PARAMS {
        let i = biggest(&per_node);
        return Err(format!(
            "the plan has {total} trainable parameters, over the limit of {MAX_PARAMS}; node {i} ({}) alone has {}: use narrower widths",
            op_name(&plan.nodes[i]),
            per_node[i]
        ));
    }
    let acts: Vec<u64> = plan.dims.iter().map(|&d| (d as u64).saturating_mul(n_items as u64)).collect();
    let total: u64 = acts.iter().fold(0, |a, &p| a.saturating_add(p));
    if total > MAX_ACTIVATIONS {
        let i = biggest(&acts);
        return Err(format!(
            "one pass of the plan over {n_items} items holds {total} floats, over the limit of {MAX_ACTIVATIONS}; node {i} ({}, width {}) is the widest: use narrower widths",
            op_name(&plan.nodes[i]),
            plan.dims[i]
        ));
    }
    Ok(())
}

/// The op's name as `fusion.wit` spells it.
pub fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Input(_) => "input",
        Op::Linear { .. } => "linear",
        Op::LayerNorm(_) => "layer-norm",
        Op::L2Norm(_) => "l2-norm",
        Op::Concat(_) => "concat",
        Op::Add(_) => "add",
        Op::Mul(..) => "mul",
        Op::WeightedSum { .. } => "weighted-sum",
        Op::Gate(_) => "gate",
        Op::Attention { .. } => "attention",
        Op::Film { .. } => "film",
        Op::Dropout { .. } => "dropout",
        Op::Activation { .. } => "activation",
    }
}

impl FusionModule {
    /// Creates the plan's weights in `p` (under `fusion.n{i}.…`) for frozen `inputs`; the `id`
    /// input, if the plan reads it, is handed to [`forward`](Self::forward) each step.
    pub fn new(plan: &Plan, inputs: Vec<ModalityInput>, p: &mut Params) -> Result<Self> {
        let n_items = inputs.first().map(|m| m.values.dim(0)).transpose()?.unwrap_or(0);
        check_size(plan, n_items).map_err(ModelError::Config)?;
        for (i, op) in plan.nodes.iter().enumerate() {
            if let Op::Input(name) = op {
                let Some(m) = inputs.iter().find(|m| &m.name == name) else {
                    if name == "id" {
                        continue;
                    }
                    return Err(ModelError::Config(format!("node {i} reads `{name}`, which has no vectors")));
                };
                if m.values.dims2()? != (n_items, plan.dims[i]) {
                    return Err(ModelError::Config(format!("input `{name}` is {:?}, the plan expects {n_items} × {}", m.values.dims(), plan.dims[i])));
                }
            }
        }
        // Nodes the output does not read get no weights: nothing untrained is created.
        let needed = needed(plan);
        let mut weights = Vec::with_capacity(plan.nodes.len());
        for (i, op) in plan.nodes.iter().enumerate() {
            if !needed[i] {
                weights.push(Weights::None);
                continue;
            }
            let name = |what: &str| format!("fusion.n{i}.{what}");
            let d = |n: usize| plan.dims[n];
            weights.push(match op {
                Op::Linear { src, out_dim, bias } => Weights::Linear(linear(p, &name("linear"), d(*src), *out_dim, *bias)?),
                Op::LayerNorm(s) => Weights::LayerNorm(LayerNorm::new(p, &name("layer_norm"), d(*s), LN_EPS)?),
                Op::WeightedSum { srcs, fixed: None } => Weights::Logits(p.var(&name("weights"), &[srcs.len()], Init::Zeros)?),
                Op::Gate(srcs) => {
                    let w = srcs.len() * d(srcs[0]);
                    Weights::Gate(linear(p, &name("gate"), w, w, true)?)
                }
                Op::Attention { query, .. } => {
                    let w = d(*query);
                    Weights::Attention {
                        query: linear(p, &name("attention.query"), w, w, true)?,
                        key: linear(p, &name("attention.key"), w, w, true)?,
                        value: linear(p, &name("attention.value"), w, w, true)?,
                        out: linear(p, &name("attention.out"), w, w, true)?,
                    }
                }
                Op::Film { target, condition } => Weights::Film(linear(p, &name("film"), d(*condition), 2 * d(*target), true)?),
                _ => Weights::None,
            });
        }
        let mut m = FusionModule { plan: plan.clone(), weights, constant: Vec::new(), needed, inputs, id_present: None };
        m.constant = m.fold_constants()?;
        Ok(m)
    }

    /// Marks where the `id` input is present (`items × 1`, 1 or 0): items without a learned ID
    /// row are then fused from their content alone.
    pub fn with_id_presence(mut self, present: Option<Tensor>) -> Self {
        self.id_present = present;
        self
    }

    /// The validated plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Which nodes depend only on frozen inputs through weight-free, deterministic ops, and
    /// their values.
    fn fold_constants(&self) -> Result<Vec<Option<Value>>> {
        let mut out: Vec<Option<Value>> = Vec::with_capacity(self.plan.nodes.len());
        for (i, op) in self.plan.nodes.iter().enumerate() {
            let srcs = sources(op);
            let foldable = self.needed[i]
                && match op {
                    Op::Input(name) => name != "id" && self.inputs.iter().any(|m| &m.name == name),
                    Op::L2Norm(_) | Op::Concat(_) | Op::Add(_) | Op::Mul(..) | Op::Activation { .. } | Op::WeightedSum { fixed: Some(_), .. } => {
                        srcs.iter().all(|&s| out[s].is_some())
                    }
                    _ => false,
                };
            out.push(if foldable {
                let vals: Vec<Value> = srcs.iter().map(|&s| out[s].clone().expect("checked")).collect();
                Some(self.node(i, &vals, None, None)?)
            } else {
                None
            });
        }
        Ok(out)
    }

    /// The fused table, `items × out_dim`, from the trainable `id` table (`items × d`, when the
    /// plan reads `id`). Dropout is applied only with a training context.
    pub fn forward(&self, id: Option<&Tensor>, ctx: Option<&TrainCtx>) -> Result<Tensor> {
        let mut vals: Vec<Option<Value>> = Vec::with_capacity(self.plan.nodes.len());
        for (i, op) in self.plan.nodes.iter().enumerate() {
            if !self.needed[i] {
                vals.push(None);
                continue;
            }
            if let Some(c) = &self.constant[i] {
                vals.push(Some(c.clone()));
                continue;
            }
            let srcs: Vec<Value> = sources(op).iter().map(|&s| vals[s].clone().expect("sources come first and are needed")).collect();
            vals.push(Some(self.node(i, &srcs, id, ctx)?));
        }
        Ok(vals[self.plan.output].take().expect("the output is needed").x)
    }

    /// Evaluates node `i` from its sources' values.
    fn node(&self, i: usize, srcs: &[Value], id: Option<&Tensor>, ctx: Option<&TrainCtx>) -> Result<Value> {
        let same = |x: Tensor| Value { x, present: srcs[0].present.clone() };
        Ok(match (&self.plan.nodes[i], &self.weights[i]) {
            (Op::Input(name), _) => match self.inputs.iter().find(|m| &m.name == name) {
                Some(m) => Value { x: m.values.clone(), present: m.present.clone() },
                None if name == "id" => {
                    let id = id.ok_or_else(|| ModelError::Config("the plan reads `id`, but no id table was given".into()))?;
                    Value { x: id.clone(), present: self.id_present.clone() }
                }
                None => return Err(ModelError::Config(format!("no input `{name}`"))),
            },
            (Op::Linear { .. }, Weights::Linear(l)) => same(l.forward(&srcs[0].x)?),
            (Op::LayerNorm(_), Weights::LayerNorm(ln)) => same(ln.forward(&srcs[0].x)?),
            (Op::L2Norm(_), _) => {
                let x = &srcs[0].x;
                same(x.broadcast_div(&(x.sqr()?.sum_keepdim(D::Minus1)? + L2_EPS)?.sqrt()?)?)
            }
            (Op::Concat(_), _) => {
                let parts = srcs.iter().map(zeroed).collect::<Result<Vec<_>>>()?;
                Value { x: Tensor::cat(&parts, D::Minus1)?, present: any_present(srcs)? }
            }
            (Op::Add(_), _) => {
                let mut x = zeroed(&srcs[0])?;
                for s in &srcs[1..] {
                    x = (x + zeroed(s)?)?;
                }
                Value { x, present: any_present(srcs)? }
            }
            (Op::Mul(..), _) => {
                let ones = |v: &Value| -> Result<Tensor> {
                    Ok(match &v.present {
                        Some(m) => v.x.broadcast_mul(m)?.broadcast_add(&(1.0 - m)?)?,
                        None => v.x.clone(),
                    })
                };
                Value { x: (ones(&srcs[0])? * ones(&srcs[1])?)?, present: any_present(srcs)? }
            }
            (Op::WeightedSum { fixed, .. }, w) => {
                let k = srcs.len();
                let device = srcs[0].x.device();
                let w = match (fixed, w) {
                    (Some(f), _) => Tensor::from_vec(f.clone(), (1, k), device)?,
                    (None, Weights::Logits(l)) => candle_nn::ops::softmax(&l.reshape((1, k))?, D::Minus1)?,
                    _ => unreachable!("weights built for the op"),
                };
                self.weighted(srcs, &w)?
            }
            (Op::Gate(_), Weights::Gate(lin)) => {
                let parts = srcs.iter().map(zeroed).collect::<Result<Vec<_>>>()?;
                let d = parts[0].dim(1)?;
                let g = candle_nn::ops::sigmoid(&lin.forward(&Tensor::cat(&parts, D::Minus1)?)?)?;
                let mut x = (g.narrow(1, 0, d)? * &parts[0])?;
                for (j, part) in parts.iter().enumerate().skip(1) {
                    x = (x + (g.narrow(1, j * d, d)? * part)?)?;
                }
                Value { x, present: any_present(srcs)? }
            }
            (Op::Attention { heads, .. }, Weights::Attention { query, key, value, out }) => self.attention(srcs, *heads, [query, key, value, out])?,
            (Op::Film { .. }, Weights::Film(lin)) => {
                let (t, c) = (&srcs[0], &srcs[1]);
                let d = t.x.dim(1)?;
                let mut gb = lin.forward(&c.x)?;
                if let Some(m) = &c.present {
                    gb = gb.broadcast_mul(m)?;
                }
                let x = (t.x.mul(&(gb.narrow(1, 0, d)? + 1.0)?)? + gb.narrow(1, d, d)?)?;
                Value { x, present: t.present.clone() }
            }
            (Op::Dropout { p, .. }, _) => same(dropout(&srcs[0].x, *p, ctx)?),
            (Op::Activation { f, .. }, _) => {
                let x = &srcs[0].x;
                same(match f {
                    Activation::Relu => x.relu()?,
                    Activation::Gelu => x.gelu_erf()?,
                    Activation::Tanh => x.tanh()?,
                    Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
                    Activation::Silu => x.silu()?,
                })
            }
            (op, _) => unreachable!("weights are built for every op: node {i} ({})", op_name(op)),
        })
    }

    /// `Σ w_j x_j` over the sources, the weights (`1 × k`) renormalised per item over the
    /// sources present, to the same total.
    fn weighted(&self, srcs: &[Value], w: &Tensor) -> Result<Value> {
        let k = srcs.len();
        let n = srcs[0].x.dim(0)?;
        let w = match srcs.iter().any(|s| s.present.is_some()) {
            false => w.broadcast_as((n, k))?.contiguous()?,
            true => {
                let m = presence_matrix(srcs, n)?; // n × k
                let wm = m.broadcast_mul(w)?;
                let total = w.sum_keepdim(1)?; // 1 × 1
                let scale = total.broadcast_div(&wm.sum_keepdim(1)?.clamp(1e-12, f64::INFINITY)?)?;
                wm.broadcast_mul(&scale)?
            }
        };
        let mut x = srcs[0].x.broadcast_mul(&w.narrow(1, 0, 1)?)?;
        for (j, s) in srcs.iter().enumerate().skip(1) {
            x = (x + s.x.broadcast_mul(&w.narrow(1, j, 1)?)?)?;
        }
        Ok(Value { x, present: any_present(srcs)? })
    }

    /// Multi-head attention of the query (`n × d`) over the keys (`k` sources, `n × d` each),
    /// one token per source; missing keys are masked out.
    fn attention(&self, srcs: &[Value], heads: usize, [wq, wk, wv, wo]: [&Linear; 4]) -> Result<Value> {
        let (q, keys) = (&srcs[0], &srcs[1..]);
        let (n, d) = q.x.dims2()?;
        let k = keys.len();
        let dh = d / heads;
        let kx = Tensor::stack(&keys.iter().map(|v| v.x.clone()).collect::<Vec<_>>(), 1)?; // n × k × d
        let split = |t: Tensor, len: usize| -> Result<Tensor> { Ok(t.reshape((n, len, heads, dh))?.transpose(1, 2)?.contiguous()?) };
        let qh = split(wq.forward(&q.x)?, 1)?; // n × h × 1 × dh
        let kh = split(wk.forward(&kx)?, k)?; // n × h × k × dh
        let vh = split(wv.forward(&kx)?, k)?;
        let mut scores = (qh.matmul(&kh.t()?.contiguous()?)? / (dh as f64).sqrt())?; // n × h × 1 × k
        let present = any_present(keys)?;
        if keys.iter().any(|v| v.present.is_some()) {
            let m = presence_matrix(keys, n)?.reshape((n, 1, 1, k))?;
            scores = scores.broadcast_add(&((m - 1.0)? * 1e9)?)?;
        }
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let y = probs.matmul(&vh)?.transpose(1, 2)?.contiguous()?.reshape((n, d))?;
        let mut x = wo.forward(&y)?;
        if let Some(m) = &present {
            x = x.broadcast_mul(m)?;
        }
        Ok(Value { x, present })
    }
}

/// Which nodes the plan's output depends on.
fn needed(plan: &Plan) -> Vec<bool> {
    let mut need = vec![false; plan.nodes.len()];
    need[plan.output] = true;
    for i in (0..plan.nodes.len()).rev() {
        if need[i] {
            for s in sources(&plan.nodes[i]) {
                need[s] = true;
            }
        }
    }
    need
}

/// PyTorch's default `nn.Linear` initialisation, with or without a bias.
fn linear(p: &mut Params, name: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
    Linear::torch_default_bias(p, name, d_in, d_out, bias)
}

/// The nodes `op` reads, in order.
pub fn sources(op: &Op) -> Vec<usize> {
    match op {
        Op::Input(_) => vec![],
        Op::Linear { src, .. } | Op::Dropout { src, .. } | Op::Activation { src, .. } => vec![*src],
        Op::LayerNorm(s) | Op::L2Norm(s) => vec![*s],
        Op::Concat(v) | Op::Add(v) | Op::Gate(v) => v.clone(),
        Op::Mul(a, b) => vec![*a, *b],
        Op::WeightedSum { srcs, .. } => srcs.clone(),
        Op::Attention { query, keys, .. } => std::iter::once(*query).chain(keys.iter().copied()).collect(),
        Op::Film { target, condition } => vec![*target, *condition],
    }
}

/// The value with missing rows zeroed.
fn zeroed(v: &Value) -> Result<Tensor> {
    Ok(match &v.present {
        Some(m) => v.x.broadcast_mul(m)?,
        None => v.x.clone(),
    })
}

/// Present where any source is; `None` when some source is always present (so the result is too).
fn any_present(srcs: &[Value]) -> Result<Option<Tensor>> {
    let masks: Vec<&Tensor> = srcs.iter().filter_map(|s| s.present.as_ref()).collect();
    if masks.len() < srcs.len() {
        return Ok(None);
    }
    let mut m = masks[0].clone();
    for other in &masks[1..] {
        m = m.maximum(*other)?;
    }
    Ok(Some(m))
}

/// The sources' presence side by side, `n × k` (ones for sources always present).
fn presence_matrix(srcs: &[Value], n: usize) -> Result<Tensor> {
    let device = srcs[0].x.device();
    let cols = srcs
        .iter()
        .map(|s| match &s.present {
            Some(m) => Ok(m.clone()),
            None => Ok(Tensor::ones((n, 1), DType::F32, device)?),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&cols, 1)?)
}
