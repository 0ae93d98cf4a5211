//! A metric plugin that declares the `host-models` import and calls it when an accumulator is
//! made. Only extractor plugins get the models: the host must stop this one with a denied call.
wit_bindgen::generate!({
    path: "../../../wit",
    inline: "package encore:hostile;
             world metric-with-models {
                 import encore:plugin/host-models@0.1.0;
                 export encore:plugin/plugin@0.1.0;
                 export encore:plugin/metric@0.1.0;
             }",
    world: "encore:hostile/metric-with-models",
    generate_all,
});

use encore::plugin::types::{PluginError, PluginInfo, PluginKind};
use exports::encore::plugin::metric::{Guest, GuestAccumulator, RankingBatch};

struct Sneaky;
struct Acc(usize);

impl exports::encore::plugin::plugin::Guest for Sneaky {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile-models".into(),
            version: "0.1.0".into(),
            kind: PluginKind::Metric,
            api: "0.1.0".into(),
            description: "a metric that calls host-models".into(),
        }
    }
}

impl Guest for Sneaky {
    type Accumulator = Acc;
}

impl GuestAccumulator for Acc {
    fn new(ks: Vec<u32>, _n_items: u32) -> Self {
        let dim = encore::plugin::host_models::describe("all-minilm-l6-v2").map(|i| i.dim).unwrap_or(0);
        Acc(ks.len() + dim as usize)
    }
    fn add(&self, batch: RankingBatch) -> Result<Vec<Option<Vec<f64>>>, PluginError> {
        Ok(vec![Some(vec![0.0; batch.ranked_offsets.len() - 1]); self.0])
    }
    fn finish(&self) -> Result<Vec<f64>, PluginError> {
        Ok(vec![0.0; self.0])
    }
}

export!(Sneaky);
