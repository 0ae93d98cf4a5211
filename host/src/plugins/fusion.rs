//! Fusion plugins: the host asks once for a plan, then validates it and infers every node's width.
//! Building the plan as candle modules lives in `models::fusion_plan`.
use super::bindings::fusion::exports::encore::plugin::fusion as wit;
use super::bindings::fusion::FusionPlugin;
use super::bindings::guest_error;
use super::bindings::types::ParamValue;
use super::runtime::{Plugin, PluginKind};
use super::PluginError;

/// An input of the plan: a modality's item vectors, or `id` for the ID embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Modality {
    /// Its name.
    pub name: String,
    /// Its width.
    pub dim: u32,
}

/// An element-wise non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Activation {
    Relu,
    Gelu,
    Tanh,
    Sigmoid,
    Silu,
}

/// One validated operation; `usize`s index earlier nodes.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Op {
    Input(String),
    Linear { src: usize, out_dim: usize, bias: bool },
    LayerNorm(usize),
    L2Norm(usize),
    Concat(Vec<usize>),
    Add(Vec<usize>),
    Mul(usize, usize),
    WeightedSum { srcs: Vec<usize>, fixed: Option<Vec<f32>> },
    Gate(Vec<usize>),
    Attention { query: usize, keys: Vec<usize>, heads: usize },
    Film { target: usize, condition: usize },
    Dropout { src: usize, p: f32 },
    Activation { src: usize, f: Activation },
}

/// A plan that passed validation, with the width of every node.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The operations, in order.
    pub nodes: Vec<Op>,
    /// Width of each node's output.
    pub dims: Vec<usize>,
    /// The output node.
    pub output: usize,
}

/// The most nodes a plan may have.
pub const MAX_NODES: usize = 4096;
/// The widest node a plan may create.
pub const MAX_DIM: usize = 1 << 16;
/// The most sources one node may read.
pub const MAX_SOURCES: usize = 256;
/// The most sources all nodes together may read. Every source is a tensor op or three, and
/// candle drops a chain of ops recursively: an `add` over 2 million sources (a 66-byte plan)
/// overflowed the stack, which no error can contain.
pub const MAX_EDGES: usize = MAX_NODES;

/// A parameter value handed to a plugin.
pub type Param = (String, ParamValue);

/// Asks `plugin` for its plan over `inputs`, producing `out_dim`-wide vectors, and validates it.
pub fn plan(plugin: &Plugin, inputs: &[Modality], out_dim: u32, params: &[Param]) -> Result<Plan, PluginError> {
    plugin.expect_kind(PluginKind::Fusion)?;
    let params = params.to_vec();
    let (mut store, linker) = plugin.sandbox()?;
    let bindings = FusionPlugin::instantiate(&mut store, plugin.component(), &linker)
        .map_err(|e| PluginError::Load { path: plugin.id().path.clone(), message: format!("instantiating: {e:#}") })?;
    let wit_inputs: Vec<wit::Modality> = inputs.iter().map(|m| wit::Modality { name: m.name.clone(), dim: m.dim }).collect();
    let raw = plugin
        .call(&mut store, |s| bindings.encore_plugin_fusion().call_plan(s, &wit_inputs, out_dim, &params))?
        .map_err(|e| plugin.returned(guest_error(e)))?;
    validate(&raw, inputs, out_dim as usize).map_err(|reason| plugin.invalid(reason))
}

/// Checks a plan a plugin returned and infers every node's width (`encore::fuzz` calls it on
/// plans of its own, without a plugin).
pub(crate) fn validate(raw: &wit::FusionPlan, inputs: &[Modality], out_dim: usize) -> Result<Plan, String> {
    if raw.nodes.is_empty() || raw.nodes.len() > MAX_NODES {
        return Err(format!("a plan has 1 to {MAX_NODES} nodes, this one has {}", raw.nodes.len()));
    }
    let edges: usize = raw
        .nodes
        .iter()
        .map(|op| match op {
            wit::Op::Input(_) => 0,
            wit::Op::Concat(v) | wit::Op::Add(v) | wit::Op::Gate(v) => v.len(),
            wit::Op::WeightedSum(w) => w.srcs.len(),
            wit::Op::Attention(a) => 1 + a.keys.len(),
            wit::Op::Mul(_) | wit::Op::Film(_) => 2,
            _ => 1,
        })
        .sum();
    if edges > MAX_EDGES {
        return Err(format!("the plan's nodes read {edges} sources together, over the limit of {MAX_EDGES}"));
    }
    let mut nodes = Vec::with_capacity(raw.nodes.len());
    let mut dims: Vec<usize> = Vec::with_capacity(raw.nodes.len());
    for (i, op) in raw.nodes.iter().enumerate() {
        let at = |n: u32| -> Result<usize, String> {
            let n = n as usize;
            if n < i {
                Ok(n)
            } else {
                Err(format!("node {i} refers to node {n}, which is not an earlier node"))
            }
        };
        let many = |v: &[u32]| -> Result<Vec<usize>, String> {
            if v.is_empty() || v.len() > MAX_SOURCES {
                return Err(format!("node {i} has {} sources (1 to {MAX_SOURCES} are accepted)", v.len()));
            }
            v.iter().map(|&n| at(n)).collect()
        };
        let same = |srcs: &[usize], dims: &[usize]| -> Result<usize, String> {
            let d = dims[srcs[0]];
            match srcs.iter().find(|&&s| dims[s] != d) {
                Some(&s) => Err(format!("node {i} combines widths {d} (node {}) and {} (node {s})", srcs[0], dims[s])),
                None => Ok(d),
            }
        };
        let (op, dim) = match op {
            wit::Op::Input(name) => match inputs.iter().find(|m| &m.name == name) {
                // The host offers no empty modality (feature files of width 0 are refused), but
                // the layers built on one would divide by its width: refused here too.
                Some(m) if m.dim == 0 => return Err(format!("node {i} reads input `{name}`, which has width 0")),
                Some(m) => (Op::Input(name.clone()), m.dim as usize),
                None => {
                    let known: Vec<&str> = inputs.iter().map(|m| m.name.as_str()).collect();
                    return Err(format!("node {i} reads input `{name}`, which is not one of: {}", known.join(", ")));
                }
            },
            wit::Op::Linear(l) => {
                let src = at(l.src)?;
                let out = l.out_dim as usize;
                if out == 0 || out > MAX_DIM {
                    return Err(format!("node {i}: linear width {out} is outside 1..={MAX_DIM}"));
                }
                (Op::Linear { src, out_dim: out, bias: l.bias }, out)
            }
            wit::Op::LayerNorm(n) => {
                let s = at(*n)?;
                (Op::LayerNorm(s), dims[s])
            }
            wit::Op::L2Norm(n) => {
                let s = at(*n)?;
                (Op::L2Norm(s), dims[s])
            }
            wit::Op::Concat(v) => {
                let srcs = many(v)?;
                let d: usize = srcs.iter().map(|&s| dims[s]).sum();
                if d > MAX_DIM {
                    return Err(format!("node {i}: concatenated width {d} is over {MAX_DIM}"));
                }
                (Op::Concat(srcs), d)
            }
            wit::Op::Add(v) => {
                let srcs = many(v)?;
                let d = same(&srcs, &dims)?;
                (Op::Add(srcs), d)
            }
            wit::Op::Mul((a, b)) => {
                let srcs = vec![at(*a)?, at(*b)?];
                let d = same(&srcs, &dims)?;
                (Op::Mul(srcs[0], srcs[1]), d)
            }
            wit::Op::WeightedSum(w) => {
                let srcs = many(&w.srcs)?;
                let d = same(&srcs, &dims)?;
                if let Some(f) = &w.fixed {
                    if f.len() != srcs.len() || f.iter().any(|x| !x.is_finite()) {
                        return Err(format!("node {i}: fixed weights must be {} finite numbers, got {:?}", srcs.len(), f));
                    }
                }
                (Op::WeightedSum { srcs, fixed: w.fixed.clone() }, d)
            }
            wit::Op::Gate(v) => {
                let srcs = many(v)?;
                let d = same(&srcs, &dims)?;
                (Op::Gate(srcs), d)
            }
            wit::Op::Attention(a) => {
                let query = at(a.query)?;
                let keys = many(&a.keys)?;
                let mut all = vec![query];
                all.extend(&keys);
                let d = same(&all, &dims)?;
                let heads = a.heads as usize;
                if heads == 0 || d % heads != 0 {
                    return Err(format!("node {i}: {heads} heads do not divide width {d}"));
                }
                (Op::Attention { query, keys, heads }, d)
            }
            wit::Op::Film(f) => {
                let target = at(f.target)?;
                let condition = at(f.condition)?;
                (Op::Film { target, condition }, dims[target])
            }
            wit::Op::Dropout(d) => {
                let src = at(d.src)?;
                if !(0.0..1.0).contains(&d.p) {
                    return Err(format!("node {i}: dropout p = {} is outside [0, 1)", d.p));
                }
                (Op::Dropout { src, p: d.p }, dims[src])
            }
            wit::Op::Activation(a) => {
                let src = at(a.src)?;
                let f = match a.f {
                    wit::Activation::Relu => Activation::Relu,
                    wit::Activation::Gelu => Activation::Gelu,
                    wit::Activation::Tanh => Activation::Tanh,
                    wit::Activation::Sigmoid => Activation::Sigmoid,
                    wit::Activation::Silu => Activation::Silu,
                };
                (Op::Activation { src, f }, dims[src])
            }
        };
        nodes.push(op);
        dims.push(dim);
    }
    let output = raw.output as usize;
    if output >= nodes.len() {
        return Err(format!("the output is node {output}, but the plan has {} nodes", nodes.len()));
    }
    if dims[output] != out_dim {
        return Err(format!("the output node has width {}, but {out_dim} was asked for", dims[output]));
    }
    Ok(Plan { nodes, dims, output })
}
