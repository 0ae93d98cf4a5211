//! Per-modality Linear to a common width, L2 normalisation of the content parts, then a weighted
//! sum: learned softmax weights, or `weights = [...]` fixed, one per input in order. The `id` part
//! keeps its length, which a trained item vector uses (popularity, in ID-only models); content
//! parts, whose scales are arbitrary, go on the unit sphere. `normalize_id = true` normalises it too.
use encore_sdk::fusion::{Fusion, Modality, Plan, PlanBuilder, Weights};
use encore_sdk::{Error, Params, Value};

struct WeightedSum;

impl Fusion for WeightedSum {
    fn plan(inputs: &[Modality], out_dim: u32, params: &Params) -> Result<Plan, Error> {
        params.only(&["weights", "normalize_id"])?;
        let weights = match params.get("weights") {
            None => Weights::Learned,
            Some(Value::Floats(w)) if w.len() == inputs.len() => Weights::Fixed(w.iter().map(|&x| x as f32).collect()),
            Some(v) => return Err(Error::invalid(format!("`weights` must be {} numbers, got {v:?}", inputs.len()))),
        };
        let normalize_id = params.bool_or("normalize_id", false)?;
        let p = PlanBuilder::new();
        let part = |m: &Modality| {
            let x = p.linear(p.input(&m.name), out_dim);
            if m.name == "id" && !normalize_id {
                x
            } else {
                p.l2_norm(x)
            }
        };
        let parts: Vec<_> = inputs.iter().map(part).collect();
        Ok(p.output(p.weighted_sum(&parts, weights)))
    }
}

encore_sdk::export_fusion!(WeightedSum);
