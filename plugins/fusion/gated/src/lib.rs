//! Gated fusion: every input projected to the output width and layer-normed, then a sigmoid gate per input and
//! dimension, computed from all inputs together, weighs each one: `Σᵢ σ(W [x₁ … x_k] + b)ᵢ ⊙ xᵢ`.
//! A missing modality is left out of the sum. `dropout` (default 0) applies to the result.
use encore_sdk::fusion::{Fusion, Modality, Plan, PlanBuilder};
use encore_sdk::{Error, Params};

struct Gated;

impl Fusion for Gated {
    fn plan(inputs: &[Modality], out_dim: u32, params: &Params) -> Result<Plan, Error> {
        params.only(&["dropout"])?;
        let dropout = params.f64_or("dropout", 0.0)? as f32;
        let p = PlanBuilder::new();
        let parts: Vec<_> = inputs.iter().map(|m| p.layer_norm(p.linear(p.input(&m.name), out_dim))).collect();
        Ok(p.output(p.dropout(p.gate(&parts), dropout)))
    }
}

encore_sdk::export_fusion!(Gated);
