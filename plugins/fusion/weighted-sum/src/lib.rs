//! Per-modality Linear to a common width, L2 normalisation, then a weighted sum: learned softmax
//! weights, or `weights = [...]` fixed, one per input in order.
use encore_sdk::fusion::{Fusion, Modality, Plan, PlanBuilder, Weights};
use encore_sdk::{Error, Params, Value};

struct WeightedSum;

impl Fusion for WeightedSum {
    fn plan(inputs: &[Modality], out_dim: u32, params: &Params) -> Result<Plan, Error> {
        params.only(&["weights"])?;
        let weights = match params.get("weights") {
            None => Weights::Learned,
            Some(Value::Floats(w)) if w.len() == inputs.len() => Weights::Fixed(w.iter().map(|&x| x as f32).collect()),
            Some(v) => return Err(Error::invalid(format!("`weights` must be {} numbers, got {v:?}", inputs.len()))),
        };
        let p = PlanBuilder::new();
        let parts: Vec<_> = inputs.iter().map(|m| p.l2_norm(p.linear(p.input(&m.name), out_dim))).collect();
        Ok(p.output(p.weighted_sum(&parts, weights)))
    }
}

encore_sdk::export_fusion!(WeightedSum);
