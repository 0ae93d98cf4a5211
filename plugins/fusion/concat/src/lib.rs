//! Concatenate the ID embedding and every modality, each layer-normed first (so that the small
//! initial ID embedding and the content vectors start on one scale), then one linear projection.
use encore_sdk::fusion::{Fusion, Modality, Plan, PlanBuilder};
use encore_sdk::{Error, Params};

struct Concat;

impl Fusion for Concat {
    fn plan(inputs: &[Modality], out_dim: u32, params: &Params) -> Result<Plan, Error> {
        params.only(&["dropout"])?;
        let dropout = params.f64_or("dropout", 0.0)? as f32;
        let p = PlanBuilder::new();
        let parts: Vec<_> = inputs.iter().map(|m| p.layer_norm(p.input(&m.name))).collect();
        Ok(p.output(p.linear(p.dropout(p.concat(&parts), dropout), out_dim)))
    }
}

encore_sdk::export_fusion!(Concat);
