//! Raw bindings that claim API 0.0.1 in `info`: the host must refuse to load it.
wit_bindgen::generate!({ path: "../../../wit", world: "metric-plugin" });

use encore::plugin::types::{PluginError, PluginInfo, PluginKind};
use exports::encore::plugin::metric::{Guest, GuestAccumulator, UserRanking};

struct Old;
struct Acc;

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
    fn new(_k: u32, _n_items: u32) -> Self {
        Acc
    }
    fn add(&self, batch: Vec<UserRanking>) -> Result<Vec<Option<f64>>, PluginError> {
        Ok(vec![Some(0.0); batch.len()])
    }
    fn finish(&self) -> Result<f64, PluginError> {
        Ok(0.0)
    }
}

export!(Old);
