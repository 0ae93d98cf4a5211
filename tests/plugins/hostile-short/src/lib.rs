//! Raw bindings that return one value fewer than the users sent: the host must refuse it.
wit_bindgen::generate!({ path: "../../../wit", world: "metric-plugin" });

use encore::plugin::types::{PluginError, PluginInfo, PluginKind};
use exports::encore::plugin::metric::{Guest, GuestAccumulator, UserRanking};

struct Short;
struct Acc;

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
    fn new(_k: u32, _n_items: u32) -> Self {
        Acc
    }
    fn add(&self, batch: Vec<UserRanking>) -> Result<Vec<Option<f64>>, PluginError> {
        Ok(vec![Some(1.0); batch.len().saturating_sub(1)])
    }
    fn finish(&self) -> Result<f64, PluginError> {
        Ok(1.0)
    }
}

export!(Short);
