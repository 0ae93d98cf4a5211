//! Raw bindings that claim API 0.0.1 in `info`: the host must refuse to load it.
wit_bindgen::generate!({ path: "../../../wit", world: "metric-plugin" });

use encore::plugin::types::{PluginError, PluginInfo, PluginKind};
use exports::encore::plugin::metric::{Guest, GuestAccumulator, RankingBatch};

struct Old;
struct Acc(usize);

impl exports::encore::plugin::plugin::Guest for Old {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "hostile-api".into(),
            version: "0.1.0".into(),
            kind: PluginKind::Metric,
            api: "0.0.1".into(),
            description: "claims an old API".into(),
        }
    }
}

impl Guest for Old {
    type Accumulator = Acc;
}

impl GuestAccumulator for Acc {
    fn new(ks: Vec<u32>, _n_items: u32) -> Self {
        Acc(ks.len())
    }
    fn add(&self, batch: RankingBatch) -> Result<Vec<Option<Vec<f64>>>, PluginError> {
        Ok(vec![Some(vec![0.0; batch.ranked_offsets.len() - 1]); self.0])
    }
    fn finish(&self) -> Result<Vec<f64>, PluginError> {
        Ok(vec![0.0; self.0])
    }
}

export!(Old);
