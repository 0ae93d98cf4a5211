//! Hit@K = 1 if any target is in the top-K, else 0 (RecBole's `Hit`).
use encore_sdk::metric::{hits, Metric};

struct Hit;

impl Metric for Hit {
    fn new(_k: u32, _n_items: u32) -> Self {
        Hit
    }
    fn add(&mut self, ranked: &[u32], targets: &[u32]) -> Option<f64> {
        Some(if hits(ranked, targets) > 0 { 1.0 } else { 0.0 })
    }
}

encore_sdk::export_metric!(Hit);
