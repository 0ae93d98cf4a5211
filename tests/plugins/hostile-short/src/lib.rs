//! Raw bindings that return one value fewer than the users sent: the host must refuse it.
wit_bindgen::generate!({ path: "../../../wit", world: "metric-plugin" });

use encore::plugin::types::{PluginError, PluginInfo, PluginKind};
use exports::encore::plugin::metric::{Guest, GuestAccumulator, RankingBatch};

struct Short;
struct Acc(usize);

impl exports::encore::plugin::plugin::Guest for Short {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile-short".into(),
            version: "0.1.0".into(),
            kind: PluginKind::Metric,
            api: "0.1.0".into(),
            description: "returns too few values".into(),
        }
    }
}

impl Guest for Short {
    type Accumulator = Acc;
}

impl GuestAccumulator for Acc {
    fn new(ks: Vec<u32>, _n_items: u32) -> Self {
        Acc(ks.len())
    }
    fn add(&self, batch: RankingBatch) -> Result<Vec<Option<Vec<f64>>>, PluginError> {
        let users = batch.ranked_offsets.len() - 1;
        Ok(vec![Some(vec![1.0; users - 1]); self.0])
    }
    fn finish(&self) -> Result<Vec<f64>, PluginError> {
        Ok(vec![1.0; self.0])
    }
}

export!(Short);
