//! Precision@K = targets found in the top-K over K. The denominator is K even when fewer than K
//! items were ranked (RecBole's `Precision`).
use encore_sdk::metric::{hits, Metric};

struct Precision {
    k: f64,
}

impl Metric for Precision {
    fn new(k: u32, _n_items: u32) -> Self {
        Precision { k: k as f64 }
    }
    fn add(&mut self, ranked: &[u32], targets: &[u32]) -> Option<f64> {
        Some(hits(ranked, targets) as f64 / self.k)
    }
}

encore_sdk::export_metric!(Precision);
