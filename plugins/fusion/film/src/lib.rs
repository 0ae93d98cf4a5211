//! FiLM (Perez et al., AAAI 2018): the concatenated content vectors (each layer-normed) produce a
//! scale and a shift for the layer-normed projection of the ID embedding: t ⊙ (1 + γ) + β.
use encore_sdk::fusion::{Fusion, Modality, Plan, PlanBuilder};
use encore_sdk::{Error, Params};

struct Film;

impl Fusion for Film {
    fn plan(inputs: &[Modality], out_dim: u32, params: &Params) -> Result<Plan, Error> {
        params.only(&[])?;
        let id = inputs.iter().find(|m| m.name == "id").ok_or_else(|| Error::invalid("needs the `id` input"))?;
        let p = PlanBuilder::new();
        let target = p.layer_norm(p.linear(p.input(&id.name), out_dim));
        let content: Vec<_> = inputs.iter().filter(|m| m.name != "id").map(|m| p.layer_norm(p.input(&m.name))).collect();
        if content.is_empty() {
            return Ok(p.output(target));
        }
        Ok(p.output(p.film(target, p.concat(&content))))
    }
}

encore_sdk::export_fusion!(Film);
