//! A plan whose output node does not exist: the host's validation must refuse it.
use encore_sdk::fusion::{Fusion, Modality, Node, Plan, PlanBuilder};
use encore_sdk::{Error, Params};

struct Dangling;

impl Fusion for Dangling {
    fn plan(inputs: &[Modality], out_dim: u32, _params: &Params) -> Result<Plan, Error> {
        let p = PlanBuilder::new();
        let x = p.linear(p.input(&inputs[0].name), out_dim);
        let _ = p.add(&[x, Node(99)]);
        Ok(p.output(Node(42)))
    }
}

encore_sdk::export_fusion!(Dangling);
