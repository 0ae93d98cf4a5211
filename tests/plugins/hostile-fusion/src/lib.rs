//! A fusion plugin that misbehaves as its `mode` parameter says: `trap` panics while planning,
//! `width` plans the wrong output width, `mismatch` adds vectors of different widths, `unknown`
//! reads an input nobody offered, and `huge` plans 10⁹ parameters with every node within the
//! per-node width limit.
use encore_sdk::fusion::{Fusion, Modality, Plan, PlanBuilder};
use encore_sdk::{Error, Params};

struct Hostile;

impl Fusion for Hostile {
    fn plan(inputs: &[Modality], out_dim: u32, params: &Params) -> Result<Plan, Error> {
        let p = PlanBuilder::new();
        let first = p.input(&inputs[0].name);
        Ok(match params.str_or("mode", "trap")? {
            "width" => p.output(p.linear(first, out_dim + 1)),
            "mismatch" => {
                let other = inputs.iter().find(|m| m.dim != inputs[0].dim).ok_or_else(|| Error::invalid("needs two widths"))?;
                p.output(p.add(&[first, p.input(&other.name)]))
            }
            "unknown" => p.output(p.linear(p.input("no-such-modality"), out_dim)),
            "huge" => {
                let wide = p.linear(first, 1 << 14);
                p.output(p.linear(p.gate(&[wide, wide, wide, wide]), out_dim))
            }
            _ => panic!("planning failed on purpose"),
        })
    }
}

encore_sdk::export_fusion!(Hostile);
