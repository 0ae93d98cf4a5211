//! Recall@K = |top-K ∩ targets| / |targets|, averaged over users (RecBole's `Recall`).
use encore_sdk::metric::{hits, Metric};

struct Recall;

impl Metric for Recall {
    fn new(_k: u32, _n_items: u32) -> Self {
        Recall
    }
    fn add(&mut self, ranked: &[u32], targets: &[u32]) -> Option<f64> {
        Some(hits(ranked, targets) as f64 / targets.len() as f64)
    }
}

encore_sdk::export_metric!(Recall);
