//! FiLM (Perez et al., AAAI 2018): the concatenated content vectors produce a scale γ and shift β;
//! the output is γ ⊙ W·id + β.
use encore_sdk::fusion::{Fusion, Modality, Plan, PlanBuilder};
use encore_sdk::{Error, Params};

struct Film;

impl Fusion for Film {
    fn plan(inputs: &[Modality], out_dim: u32, params: &Params) -> Result<Plan, Error> {
        params.only(&[])?;
        let id = inputs.iter().find(|m| m.name == "id").ok_or_else(|| Error::invalid("needs the `id` input"))?;
        let p = PlanBuilder::new();
        let target = p.linear(p.input(&id.name), out_dim);
        let content: Vec<_> = inputs.iter().filter(|m| m.name != "id").map(|m| p.input(&m.name)).collect();
        if content.is_empty() {
            return Ok(p.output(target));
        }
        Ok(p.output(p.film(target, p.concat(&content))))
    }
}

encore_sdk::export_fusion!(Film);
