//! Fusion strategies. A plugin returns a [`Plan`] once; the host validates it and builds it as native
//! modules, so fusion trains at native speed.
use crate::{Error, Params};
use std::cell::RefCell;

/// An input the plan may read: a modality, or `id` for the ID-encoder item embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Modality {
    /// The modality's name.
    pub name: String,
    /// Its vector length.
    pub dim: u32,
}

/// A node of the plan under construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node(pub u32);

/// An element-wise non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// max(0, x)
    Relu,
    /// Gaussian error linear unit.
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// x · sigmoid(x)
    Silu,
}

/// How a weighted sum weighs its sources.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    /// Softmax-normalised weights learned with the model.
    Learned,
    /// Fixed weights, one per source.
    Fixed(Vec<f32>),
}

/// One operation of a plan. Nodes refer to earlier nodes.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Op {
    Input(String),
    Linear { src: Node, out_dim: u32, bias: bool },
    LayerNorm(Node),
    L2Norm(Node),
    Concat(Vec<Node>),
    Add(Vec<Node>),
    Mul(Node, Node),
    WeightedSum { srcs: Vec<Node>, weights: Weights },
    Gate(Vec<Node>),
    Attention { query: Node, keys: Vec<Node>, heads: u32 },
    Film { target: Node, condition: Node },
    Dropout { src: Node, p: f32 },
    Activation { src: Node, f: Activation },
}

/// A finished plan: the nodes and which one is the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The operations, in order.
    pub nodes: Vec<Op>,
    /// The node whose value is the fused item vector.
    pub output: Node,
}

/// A fusion strategy.
pub trait Fusion: 'static {
    /// Plans how `inputs` combine into one vector of length `out_dim`.
    fn plan(inputs: &[Modality], out_dim: u32, params: &Params) -> Result<Plan, Error>;
}

/// Builds a [`Plan`]. Methods take `&self` so calls nest: `p.l2_norm(p.linear(p.input("audio"), 64))`.
#[derive(Debug, Default)]
pub struct PlanBuilder {
    nodes: RefCell<Vec<Op>>,
}

#[allow(missing_docs)]
impl PlanBuilder {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }
    fn push(&self, op: Op) -> Node {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(op);
        Node(nodes.len() as u32 - 1)
    }
    pub fn input(&self, name: &str) -> Node {
        self.push(Op::Input(name.to_string()))
    }
    pub fn linear(&self, src: Node, out_dim: u32) -> Node {
        self.push(Op::Linear { src, out_dim, bias: true })
    }
    pub fn linear_no_bias(&self, src: Node, out_dim: u32) -> Node {
        self.push(Op::Linear { src, out_dim, bias: false })
    }
    pub fn layer_norm(&self, src: Node) -> Node {
        self.push(Op::LayerNorm(src))
    }
    pub fn l2_norm(&self, src: Node) -> Node {
        self.push(Op::L2Norm(src))
    }
    pub fn concat(&self, srcs: &[Node]) -> Node {
        self.push(Op::Concat(srcs.to_vec()))
    }
    pub fn add(&self, srcs: &[Node]) -> Node {
        self.push(Op::Add(srcs.to_vec()))
    }
    pub fn mul(&self, a: Node, b: Node) -> Node {
        self.push(Op::Mul(a, b))
    }
    pub fn weighted_sum(&self, srcs: &[Node], weights: Weights) -> Node {
        self.push(Op::WeightedSum { srcs: srcs.to_vec(), weights })
    }
    pub fn gate(&self, srcs: &[Node]) -> Node {
        self.push(Op::Gate(srcs.to_vec()))
    }
    pub fn attention(&self, query: Node, keys: &[Node], heads: u32) -> Node {
        self.push(Op::Attention { query, keys: keys.to_vec(), heads })
    }
    pub fn film(&self, target: Node, condition: Node) -> Node {
        self.push(Op::Film { target, condition })
    }
    pub fn dropout(&self, src: Node, p: f32) -> Node {
        self.push(Op::Dropout { src, p })
    }
    pub fn activation(&self, src: Node, f: Activation) -> Node {
        self.push(Op::Activation { src, f })
    }
    /// Finishes the plan with `output` as its result.
    pub fn output(&self, output: Node) -> Plan {
        Plan { nodes: self.nodes.take(), output }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_calls_number_nodes_in_order() {
        let p = PlanBuilder::new();
        let plan = p.output(p.l2_norm(p.linear(p.input("audio"), 8)));
        assert_eq!(plan.nodes, vec![Op::Input("audio".into()), Op::Linear { src: Node(0), out_dim: 8, bias: true }, Op::L2Norm(Node(1))]);
        assert_eq!(plan.output, Node(2));
    }
}
