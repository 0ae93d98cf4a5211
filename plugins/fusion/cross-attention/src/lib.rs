//! The ID embedding, projected, is the query; every modality, projected to the same width, is a
//! key/value; `heads` heads (4 by default). Every projection is layer-normed, so that the small
//! initial ID embedding and the content start on one scale; a residual keeps the ID signal.
use encore_sdk::fusion::{Fusion, Modality, Plan, PlanBuilder};
use encore_sdk::{Error, Params};

struct CrossAttention;

impl Fusion for CrossAttention {
    fn plan(inputs: &[Modality], out_dim: u32, params: &Params) -> Result<Plan, Error> {
        params.only(&["heads"])?;
        let heads = params.u32_or("heads", 4)?;
        let id = inputs.iter().find(|m| m.name == "id").ok_or_else(|| Error::invalid("needs the `id` input"))?;
        let p = PlanBuilder::new();
        let query = p.layer_norm(p.linear(p.input(&id.name), out_dim));
        let keys: Vec<_> = inputs.iter().filter(|m| m.name != "id").map(|m| p.layer_norm(p.linear(p.input(&m.name), out_dim))).collect();
        if keys.is_empty() {
            return Ok(p.output(query));
        }
        Ok(p.output(p.layer_norm(p.add(&[query, p.attention(query, &keys, heads)]))))
    }
}

encore_sdk::export_fusion!(CrossAttention);
