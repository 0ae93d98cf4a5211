//! MRR@K = 1 / rank of the first target in the top-K, 0 when none is there (RecBole's `MRR`).
use encore_sdk::metric::{hit_flags, Metric};

struct Mrr;

impl Metric for Mrr {
    fn new(_k: u32, _n_items: u32) -> Self {
        Mrr
    }
    fn add(&mut self, ranked: &[u32], targets: &[u32]) -> Option<f64> {
        Some(hit_flags(ranked, targets).position(|h| h).map_or(0.0, |p| 1.0 / (p + 1) as f64))
    }
}

encore_sdk::export_metric!(Mrr);
